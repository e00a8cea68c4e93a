"""`resources doctor`: compare catalog, blobs and index; report by kind; repair.

Kinds of inconsistency (each with a count):
  pending-operation  an intent a crashed process left (finished or rolled back on repair)
  temp-leftover      a staged upload whose writer died (removed on repair)
  missing-blob       a record whose blob is gone (record removed on repair: unreadable)
  size-mismatch      blob size differs from the record (blob quarantined, record removed)
  sha256-mismatch    blob bytes differ from the record (blob quarantined, record removed)
  orphan-blob        a blob no record owns (registered when it sits in a bound slot
                     folder, like `watch` would; otherwise moved to quarantine)
  index-missing / index-extra / index-stale
                     index document absent, without record, or older than the record
                     (re-indexed from the catalog on repair)
  expired-present    past expires-at but not yet swept (gc'd on repair)
  connection-unavailable
                     an object store that did not answer (nothing repaired there)
Semantic search (reported under ``semantic``, not counted as problems: embedding
follows writes in the background): ``missing-vectors`` (resources not embedded yet or
changed since), ``orphan-vectors`` (vectors whose resource is gone; dropped on repair).
Orphans and leftovers on a connection other than ``platform`` are named
``<connection>:<key>``; their quarantine is the connection's ``_quarantine/`` prefix.
Repairs never destroy bytes: suspect blobs go to <home>/quarantine/.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from storage.config import DEFAULT_CONNECTION
from storage.backend import StorageBackend
from storage.errors import IndexBusy, InvalidPath, Unavailable

from .service import ResourceService

KINDS = ("catalog-damaged", "pending-operation", "temp-leftover", "missing-blob", "size-mismatch",
         "sha256-mismatch", "orphan-blob", "index-missing", "index-extra", "index-stale",
         "expired-present", "connection-unavailable")


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str = ""


def _sha256(backend: StorageBackend, key: str) -> str:
    h = hashlib.sha256()
    try:
        for chunk in backend.open_read(key, chunk_size=1024 * 1024):
            h.update(chunk)
    except FileNotFoundError:
        return ""
    return h.hexdigest()


def diagnose(svc: ResourceService, verify_bytes: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    # SQLite's own page check first: every other check trusts what the catalog answers.
    for message in svc.catalog.integrity(quick=not verify_bytes)[:20]:
        problems.append(Problem("catalog-damaged", svc.catalog.location, message))
    if problems:
        return problems       # nothing else can be trusted (see docs/recovery.md)
    for intent_id, kind, payload in svc.catalog.intents.pending():
        if kind == "gc":
            continue          # a sweep in progress (or finished at next start)
        problems.append(Problem("pending-operation", f"intent {intent_id}", kind))
    down: dict[str, str] = {}         # connections that did not answer, and why
    for conn, backend in svc.backends.items():
        try:
            for ref, _ in backend.list_staging():
                problems.append(Problem("temp-leftover", _subject(conn, ref)))
        except Unavailable as exc:
            down[conn] = exc.message
    # The normal catch-up is not a problem: apply the log here, or (when `serve` writes
    # the index) wait until its follower has caught up with what is in the catalog now.
    svc.index.try_sync()
    try:
        svc.index.wait_for(svc.catalog.changes.head(), svc.settings.index_lock_wait_seconds)
    except IndexBusy:
        pass                      # then the drift below is real enough to report
    owned: set[tuple[str, str]] = set()
    seqs: dict[str, int] = {}
    expired_ids: set[str] = set()
    now = svc.now()
    for res in svc.catalog.resources.all():
        owned.add((res.connection, res.path))
        seqs[res.id] = res.seq
        if res.expires_at is not None and res.expires_at <= now:
            problems.append(Problem("expired-present", res.uri))
            # The index writer deletes expired documents ahead of gc (SearchIndex.
            # sweep_expired): present or not, the index is right about this one.
            del seqs[res.id]
            expired_ids.add(res.id)
        backend = svc.backends.get(res.connection)
        if backend is None or res.connection in down:
            continue
        try:
            stat = backend.stat(res.path)
            sha_ok = not verify_bytes or stat.size != res.size or \
                _sha256(backend, res.path) == res.sha256
        except (FileNotFoundError, InvalidPath):
            # A blob reached only through a symbolic link is not a blob of ours.
            problems.append(Problem("missing-blob", res.uri, res.path))
            continue
        except Unavailable as exc:
            down[res.connection] = exc.message
            continue
        if stat.size != res.size:
            problems.append(Problem("size-mismatch", res.uri,
                                    f"record {res.size} bytes, blob {stat.size} bytes"))
        elif not sha_ok:
            problems.append(Problem("sha256-mismatch", res.uri, res.path))
    for conn, store in svc.backends.items():
        if conn in down:
            continue
        try:
            for blob in store.list("workspaces"):
                if (conn, blob.key) not in owned:
                    problems.append(Problem("orphan-blob", _subject(conn, blob.key),
                                            f"{blob.size} bytes"))
        except Unavailable as exc:
            down[conn] = exc.message
    problems.extend(Problem("connection-unavailable", conn, why) for conn, why in down.items())
    indexed = dict(svc.index.doc_ids())
    for id_, seq in seqs.items():
        if id_ not in indexed:
            problems.append(Problem("index-missing", id_))
        elif indexed[id_] != seq:
            problems.append(Problem("index-stale", id_, f"index seq {indexed[id_]}, catalog {seq}"))
    for id_ in indexed:
        if id_ not in seqs and id_ not in expired_ids:
            problems.append(Problem("index-extra", id_))
    return problems


def semantic_report(svc: ResourceService, do_repair: bool = False) -> dict[str, Any]:
    """Resources without current vectors and vectors without a resource (the store's own
    SQL; the model is not loaded for this)."""
    from indexer.semantic import MODEL_ID
    store = svc.catalog.vectors
    out: dict[str, Any] = {"enabled": svc.settings.semantic}
    if do_repair:
        _, orphans = store.orphans(limit=10**9)
        store.forget(orphans)
        out["orphan-vectors-dropped"] = len(orphans)
    missing = store.pending_all(MODEL_ID)
    orphan_count, orphan_ids = store.orphans(limit=20)
    docs, chunks = store.counts()
    out.update({"embedded": docs, "chunks": chunks,
                "missing-vectors": missing, "orphan-vectors": orphan_count,
                "orphan-examples": orphan_ids})
    if missing:
        out["hint"] = ("a running serve embeds them in the background; "
                       "`resources reindex --semantic` rebuilds every vector")
    return out


def _subject(connection: str, key: str) -> str:
    """Orphans on other connections are named ``<connection>:<key>``."""
    return key if connection == DEFAULT_CONNECTION else f"{connection}:{key}"


def _location(subject: str) -> tuple[str, str]:
    head, sep, rest = subject.partition(":")
    if sep and "/" not in head:
        return head, rest
    return DEFAULT_CONNECTION, subject


def _quarantine(svc: ResourceService, key: str, connection: str = DEFAULT_CONNECTION) -> str:
    if connection != DEFAULT_CONNECTION:
        # Object storage: a copy under _quarantine/ (outside workspaces/, so neither
        # doctor nor sync-slot sees it again), then the original goes.
        backend = svc.backends[connection]
        dest = f"_quarantine/{int(time.time())}-{key.replace('/', '__')}"
        writer = backend.open_write(dest, 1 << 62)
        try:
            for chunk in backend.open_read(key, chunk_size=1024 * 1024):
                writer.write(chunk)
            writer.finish()
            writer.publish()
        except BaseException:
            writer.abort()
            raise
        backend.delete(key)
        return f"{connection}:{dest}"
    platform = svc.backends[DEFAULT_CONNECTION]
    if not key.startswith("workspaces/"):
        # Only blobs are ever moved: never the catalog, its WAL, the index or the secret.
        raise InvalidPath(f"{key} is not a blob location; it is never quarantined")
    src = platform.path_for(key)        # refuses any path through a symbolic link
    dest_dir = svc.settings.home / "quarantine"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{int(time.time())}-{key.replace('/', '__')}"
    os.replace(src, dest)
    return str(dest)


def _slot_for(svc: ResourceService, key: str, connection: str = DEFAULT_CONNECTION
              ) -> tuple[str, Any, str] | None:
    """(workspace, slot, path under root) when key sits in a bound slot folder of a
    connection that can adopt files."""
    parts = key.split("/")
    if len(parts) < 5 or parts[0] != "workspaces" or parts[2] != "storage":
        return None
    ws, rest = parts[1], "/".join(parts[3:])
    for slot in svc.catalog.slots.list(ws):
        if slot.connection == connection and svc.backends[connection].can_adopt and \
                rest.startswith(slot.root + "/"):
            return ws, slot, rest[len(slot.root) + 1:]
    return None


def repair(svc: ResourceService, problems: list[Problem]) -> tuple[list[dict], list[dict]]:
    fixed: list[dict] = []
    unfixed: list[dict] = []
    by_kind: dict[str, list[Problem]] = {}
    for p in problems:
        by_kind.setdefault(p.kind, []).append(p)
    if "pending-operation" in by_kind or "temp-leftover" in by_kind:
        svc.lifecycle.recover()
        for p in by_kind.get("pending-operation", []) + by_kind.get("temp-leftover", []):
            fixed.append({**asdict(p), "action": "finished or rolled back"})
    for kind in ("missing-blob", "size-mismatch", "sha256-mismatch"):
        for p in by_kind.get(kind, []):
            try:
                res = svc.catalog.resources.get(p.subject.rsplit("/", 1)[-1])
                if res is None:
                    continue
                action = "record removed (blob gone)"
                if kind != "missing-blob":
                    action = (f"blob quarantined at "
                              f"{_quarantine(svc, res.path, res.connection)}; record removed")
                svc.lifecycle.delete([res])
                fixed.append({**asdict(p), "action": action})
            except Exception as exc:  # noqa: BLE001 - report and go on
                unfixed.append({**asdict(p), "reason": str(exc)})
    for p in by_kind.get("orphan-blob", []):
        try:
            # Recovery above may have settled it (a rolled-forward persist now owns the
            # blob, a finished delete removed it): never quarantine a now-owned blob.
            conn, key = _location(p.subject)
            backend = svc.backends[conn]
            try:
                backend.stat(key)
                gone = False
            except FileNotFoundError:
                gone = True
            if gone or svc.catalog.resources.by_location(conn, key) is not None:
                fixed.append({**asdict(p), "action": "settled by recovery"})
                continue
            placed = _slot_for(svc, key, conn)
            if placed is not None:
                ws, slot, under = placed
                folder, _, leaf = under.rpartition("/")
                res = svc.adopt(ws, {"slot": slot.name, "path": folder or None,
                                     "filename": leaf}).resource
                fixed.append({**asdict(p), "action": f"registered as {res.uri}"})
            else:
                fixed.append({**asdict(p),
                              "action": f"quarantined at {_quarantine(svc, key, conn)}"})
        except Exception as exc:  # noqa: BLE001
            unfixed.append({**asdict(p), "reason": str(exc)})
    index_ids = [p.subject for k in ("index-missing", "index-extra", "index-stale")
                 for p in by_kind.get(k, [])]
    if index_ids:
        with svc.catalog.transaction() as conn:
            for id_ in index_ids:
                svc.catalog.changes.append(conn, id_)
        try:
            svc.index.sync()
            for k in ("index-missing", "index-extra", "index-stale"):
                fixed.extend({**asdict(p), "action": "re-indexed"} for p in by_kind.get(k, []))
        except Exception as exc:  # noqa: BLE001
            for k in ("index-missing", "index-extra", "index-stale"):
                unfixed.extend({**asdict(p), "reason": str(exc)} for p in by_kind.get(k, []))
    if "expired-present" in by_kind:
        svc.gc()
        fixed.extend({**asdict(p), "action": "swept by gc"} for p in by_kind["expired-present"])
    svc.index.try_sync()
    return fixed, unfixed


def run(svc: ResourceService, do_repair: bool = False, verify_bytes: bool = True) -> dict[str, Any]:
    problems = diagnose(svc, verify_bytes)
    report: dict[str, Any] = {}
    if any(p.kind == "catalog-damaged" for p in problems):
        # No repair on a damaged catalog: it would act on wrong answers. The operator
        # restores it first (docs/recovery.md).
        return {"ok": False, "counts": {k: sum(p.kind == k for p in problems) for k in KINDS},
                "problems": [asdict(p) for p in problems],
                "hint": "the catalog is damaged: see docs/recovery.md before any repair"}
    if do_repair and problems:
        fixed, unfixed = repair(svc, problems)
        report["repaired"] = fixed
        report["not-repaired"] = unfixed
        problems = diagnose(svc, verify_bytes)
    counts = {k: 0 for k in KINDS}
    for p in problems:
        counts[p.kind] += 1
    report.update({
        "ok": not problems,
        "counts": counts,
        "problems": [asdict(p) for p in problems],
        "usage": svc.usage(None),
    })
    set_aside = svc.catalog.intents.quarantined()
    report["set-aside-operations"] = {
        "count": len(set_aside),
        "items": [{"intent": i, "kind": k, "error": p.get("_error")} for i, k, p in set_aside]}
    report["semantic"] = semantic_report(svc, do_repair)
    if hasattr(svc, "kv"):
        dangling = svc.dangling_refs()
        report["dangling-kv-refs"] = {"count": len(dangling), "items": dangling}
    return report

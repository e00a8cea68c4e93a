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
Repairs never destroy bytes: suspect blobs go to <home>/quarantine/.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from storage.errors import IndexBusy

from .service import ResourceService

KINDS = ("pending-operation", "temp-leftover", "missing-blob", "size-mismatch",
         "sha256-mismatch", "orphan-blob", "index-missing", "index-extra", "index-stale",
         "expired-present")


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str = ""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def diagnose(svc: ResourceService, verify_bytes: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    for intent_id, kind, payload in svc.catalog.intents():
        if kind == "gc":
            continue          # a sweep in progress (or finished at next start)
        problems.append(Problem("pending-operation", f"intent {intent_id}", kind))
    for backend in svc.backends.values():
        for ref, _ in backend.list_staging():
            problems.append(Problem("temp-leftover", ref))
    # The normal catch-up is not a problem: apply the log here, or (when `serve` writes
    # the index) wait until its follower has caught up with what is in the catalog now.
    svc.index.try_sync()
    try:
        svc.index.wait_for(svc.catalog.head(), svc.settings.index_lock_wait_seconds)
    except IndexBusy:
        pass                      # then the drift below is real enough to report
    platform = svc.backends["platform"]
    owned: set[str] = set()
    seqs: dict[str, int] = {}
    now = svc.now()
    for res in svc.catalog.iter_resources():
        owned.add(res.path)
        seqs[res.id] = res.seq
        if res.expires_at is not None and res.expires_at <= now:
            problems.append(Problem("expired-present", res.uri))
        backend = svc.backends.get(res.connection)
        if backend is None:
            continue
        try:
            stat = backend.stat(res.path)
        except FileNotFoundError:
            problems.append(Problem("missing-blob", res.uri, res.path))
            continue
        if stat.size != res.size:
            problems.append(Problem("size-mismatch", res.uri,
                                    f"record {res.size} bytes, blob {stat.size} bytes"))
        elif verify_bytes and hasattr(backend, "path_for") and \
                _sha256(backend.path_for(res.path)) != res.sha256:
            problems.append(Problem("sha256-mismatch", res.uri, res.path))
    for blob in platform.list("workspaces"):
        if blob.key not in owned:
            problems.append(Problem("orphan-blob", blob.key, f"{blob.size} bytes"))
    indexed = dict(svc.index.doc_ids())
    for id_, seq in seqs.items():
        if id_ not in indexed:
            problems.append(Problem("index-missing", id_))
        elif indexed[id_] != seq:
            problems.append(Problem("index-stale", id_, f"index seq {indexed[id_]}, catalog {seq}"))
    for id_ in indexed:
        if id_ not in seqs:
            problems.append(Problem("index-extra", id_))
    return problems


def _quarantine(svc: ResourceService, key: str) -> str:
    platform = svc.backends["platform"]
    src = platform.path_for(key)
    dest_dir = svc.settings.home / "quarantine"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{int(time.time())}-{key.replace('/', '__')}"
    os.replace(src, dest)
    return str(dest)


def _slot_for(svc: ResourceService, key: str) -> tuple[str, Any, str] | None:
    """(workspace, slot, path under root) when key sits in a bound platform slot folder."""
    parts = key.split("/")
    if len(parts) < 5 or parts[0] != "workspaces" or parts[2] != "storage":
        return None
    ws, rest = parts[1], "/".join(parts[3:])
    for slot in svc.catalog.list_slots(ws):
        if slot.connection == "platform" and rest.startswith(slot.root + "/"):
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
                res = svc.catalog.get(p.subject.rsplit("/", 1)[-1])
                if res is None:
                    continue
                action = "record removed (blob gone)"
                if kind != "missing-blob":
                    action = f"blob quarantined at {_quarantine(svc, res.path)}; record removed"
                svc.lifecycle.delete([res])
                fixed.append({**asdict(p), "action": action})
            except Exception as exc:  # noqa: BLE001 - report and go on
                unfixed.append({**asdict(p), "reason": str(exc)})
    for p in by_kind.get("orphan-blob", []):
        try:
            # Recovery above may have settled it (a rolled-forward persist now owns the
            # blob, a finished delete removed it): never quarantine a now-owned blob.
            if not svc.backends["platform"].path_for(p.subject).exists() or \
                    svc.catalog.by_location(svc.catalog.conn, "platform", p.subject) is not None:
                fixed.append({**asdict(p), "action": "settled by recovery"})
                continue
            placed = _slot_for(svc, p.subject)
            if placed is not None:
                ws, slot, under = placed
                folder, _, leaf = under.rpartition("/")
                res = svc.adopt(ws, {"slot": slot.name, "path": folder or None,
                                     "filename": leaf}).resource
                fixed.append({**asdict(p), "action": f"registered as {res.uri}"})
            else:
                fixed.append({**asdict(p), "action": f"quarantined at {_quarantine(svc, p.subject)}"})
        except Exception as exc:  # noqa: BLE001
            unfixed.append({**asdict(p), "reason": str(exc)})
    index_ids = [p.subject for k in ("index-missing", "index-extra", "index-stale")
                 for p in by_kind.get(k, [])]
    if index_ids:
        with svc.catalog.transaction() as conn:
            for id_ in index_ids:
                svc.catalog.enqueue_index(conn, id_)
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
    if hasattr(svc, "kv"):
        dangling = svc.dangling_refs()
        report["dangling-kv-refs"] = {"count": len(dangling), "items": dangling}
    return report

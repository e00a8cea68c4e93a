"""One lifecycle per resource: blob, record and index entry move together.

This module is the only place that changes a blob and its catalog record together.
The index follows through the catalog's outbox (see ``indexer.index``).

Order of a persist, under the commit lock:
  1. the body is already staged and fsynced (``BlobWriter.finish``);
  2. a durable intent records what is about to happen (with the full new record);
  3. the staged file is renamed over its key (atomic);
  4. one transaction writes the record, its text, the outbox row and drops the intent.
A crash before 3 leaves the staged file: recovery rolls back (drops it). A crash after 3
leaves the blob in place: recovery rolls forward (writes the record from the intent).
Only after 4 is the persist acknowledged, so an acknowledged write is never lost.

Order of a delete: one transaction removes the record, enqueues the index delete and
records an intent to unlink the blob; then the blob is unlinked and the intent dropped.
A crash in between is finished by recovery. Search never shows a record-less document
for long: the outbox entry is in the same transaction as the record's removal.
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
from pathlib import Path
from typing import Callable, Iterator, Mapping

from .backend import BlobWriter, StorageBackend
from .catalog import Catalog
from .errors import Conflict, from_os_error
from .faults import fault
from .records import Resource


class CommitLock:
    """Serialises the publish+record step across threads and processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fh = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._fh = open(self.path, "a+")
                fcntl.flock(self._fh, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fh is not None:
                    fcntl.flock(self._fh, fcntl.LOCK_UN)
                    self._fh.close()
                    self._fh = None


class Lifecycle:
    def __init__(self, catalog: Catalog, backends: Mapping[str, StorageBackend],
                 lock: CommitLock, now: Callable[[], float],
                 log: Callable[[str], None]) -> None:
        self.catalog = catalog
        self.backends = backends
        self.lock = lock
        self.now = now
        self.log = log

    # -- persist -------------------------------------------------------------------------
    def publish(self, writer: BlobWriter, res: Resource, text: str,
                idempotency: tuple[str, str, str] | None = None) -> tuple[Resource, bool]:
        """Steps 2-4 of a persist; returns (record, created). A record already at the
        location (slot rewrite) is read under the lock: same id and created-at, version+1."""
        with self.lock.held():
            with self.catalog.transaction() as conn:
                current = self.catalog.by_location(conn, res.connection, res.path)
            if current is not None:
                if current.type != res.type:
                    raise Conflict(f"a {current.type} resource already lives at {res.path}; "
                                   f"a {res.type} cannot replace it")
                res.id = current.id
                res.created_at = current.created_at
                res.version = current.version + 1
            fault("persist.before_intent")
            intent = self.catalog.add_intent("persist", {
                "staging": writer.staging_ref, "connection": res.connection,
                "row": res.to_row(), "text": text,
                "idempotency": list(idempotency) if idempotency else None,
            }, self.now())
            fault("persist.before_publish")
            try:
                writer.publish()
            except OSError as exc:
                self._refused(writer, intent, exc, res.path)
            fault("persist.after_publish")
            with self.catalog.transaction() as conn:
                res.seq = self.catalog.next_seq(conn)
                self.catalog.upsert(conn, res, text)
                if idempotency:
                    ws, key, request_hash = idempotency
                    conn.execute("DELETE FROM idempotency WHERE workspace=? AND key=?", (ws, key))
                    self.catalog.put_idempotency(conn, ws, key, request_hash, res.id, self.now())
                self.catalog.drop_intent(conn, intent)
            fault("persist.after_commit")
            return res, current is None

    def publish_many(self, items: list[tuple[BlobWriter, Resource, str]],
                     backend: StorageBackend) -> list[tuple[Resource, bool]]:
        """The bulk form of ``publish``: the same steps and intents, but one transaction
        for all intents, one for all records, and one durability barrier instead of an
        fsync per file and folder. The staged bytes must be durable already
        (``backend.sync_barrier()`` after ``finish(durable=False)``)."""
        out: list[tuple[Resource, bool]] = []
        with self.lock.held():
            seen: dict[tuple[str, str], Resource] = {}
            with self.catalog.transaction() as conn:
                for _, res, _ in items:
                    loc = (res.connection, res.path)
                    current = seen.get(loc) or self.catalog.by_location(conn, *loc)
                    if current is not None:
                        if current.type != res.type:
                            raise Conflict(f"a {current.type} resource already lives at "
                                           f"{res.path}; a {res.type} cannot replace it")
                        res.id, res.created_at = current.id, current.created_at
                        res.version = current.version + 1
                    out.append((res, current is None))
                    seen[loc] = res
                fault("persist.before_intent")
                intents = [int(conn.execute(
                    "INSERT INTO intents(kind, payload, created_at) VALUES ('persist', ?, ?)",
                    (_json({"staging": w.staging_ref, "connection": r.connection,
                            "row": r.to_row(), "text": t, "idempotency": None}),
                     self.now())).lastrowid) for w, r, t in items]
            fault("persist.before_publish")
            failed: dict[int, BaseException] = {}
            for i, (writer, res, _) in enumerate(items):
                try:
                    writer.publish(durable=False)
                except OSError as exc:
                    # One refused item (a collision inside the batch) must not strand
                    # the others' intents: they are committed, this one rolled back.
                    try:
                        self._refused(writer, intents[i], exc, res.path)
                    except Exception as typed:       # noqa: BLE001 - re-raised below
                        failed[i] = typed
            backend.sync_barrier()
            fault("persist.after_publish")
            with self.catalog.transaction() as conn:
                for i, ((_, res, text), intent) in enumerate(zip(items, intents)):
                    if i in failed:
                        continue
                    res.seq = self.catalog.next_seq(conn)
                    self.catalog.upsert(conn, res, text)
                    self.catalog.drop_intent(conn, intent)
            fault("persist.after_commit")
            if failed:
                raise next(iter(failed.values()))
        return out

    def _refused(self, writer: BlobWriter, intent: int, exc: OSError, key: str) -> None:
        """The filesystem refused a publish: nothing was placed, so the intent goes
        (recovery must never roll it forward) and the staged bytes with it."""
        writer.abort()
        with self.catalog.transaction() as conn:
            self.catalog.drop_intent(conn, intent)
        typed = from_os_error(exc, key)
        if typed is None:
            raise exc
        raise typed from exc

    # -- delete --------------------------------------------------------------------------
    def delete(self, resources: list[Resource]) -> None:
        """Remove blobs, records and (through the outbox) index entries together."""
        if not resources:
            return
        with self.lock.held():
            intents = []
            with self.catalog.transaction() as conn:
                for res in resources:
                    self.catalog.delete(conn, res.id)
                    cur = conn.execute(
                        "INSERT INTO intents(kind, payload, created_at) VALUES ('delete', ?, ?)",
                        (_json({"connection": res.connection, "key": res.path, "id": res.id}),
                         self.now()))
                    intents.append(int(cur.lastrowid))
            fault("delete.after_record")
            for res in resources:
                self.backends[res.connection].delete(res.path)
            fault("delete.after_blob")
            with self.catalog.transaction() as conn:
                for intent in intents:
                    self.catalog.drop_intent(conn, intent)

    # -- recovery ------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Finish or roll back what a crashed process left half-done. One intent that
        cannot be finished (the filesystem refuses its path, its payload is damaged) is
        set aside in quarantine and reported; it never stops the start."""
        counts = {"rolled_back": 0, "rolled_forward": 0, "deletes_finished": 0,
                  "staging_removed": 0, "quarantined": 0}
        with self.lock.held():
            for intent_id, kind, payload in self.catalog.intents():
                try:
                    outcome = self._recover_one(intent_id, kind, payload)
                except Exception as exc:      # noqa: BLE001 - one bad intent, not a crash
                    self._quarantine_intent(intent_id, kind, payload, exc)
                    outcome = "quarantined"
                if outcome:
                    counts[outcome] += 1
            for backend in self.backends.values():
                try:
                    staged = list(backend.list_staging())
                except OSError as exc:
                    self.log(f"recovery: cannot list staged writes: {exc}")
                    continue
                for ref, _mtime in staged:
                    backend.discard_staging(ref)
                    counts["staging_removed"] += 1
        if any(counts.values()):
            self.log(f"recovery: {counts}")
        return counts

    def _recover_one(self, intent_id: int, kind: str, payload: dict) -> str | None:
        backend = self.backends.get(payload.get("connection", "platform"))
        if backend is None:
            return None
        if kind == "persist":
            if backend.staging_exists(payload["staging"]):
                backend.discard_staging(payload["staging"])
                with self.catalog.transaction() as conn:
                    self.catalog.drop_intent(conn, intent_id)
                return "rolled_back"
            res = Resource.from_row(payload["row"])
            try:
                blob = backend.stat(res.path)
            except FileNotFoundError:
                blob = None
            # Only the very bytes the intent promised are rolled forward: a folder, a
            # link or a file of another size at the key is not this persist's blob.
            exists = blob is not None and blob.size == res.size
            outcome = None
            with self.catalog.transaction() as conn:
                current = self.catalog.get(res.id, conn)
                if exists and (current is None or current.sha256 != res.sha256
                               or current.version < res.version):
                    res.seq = self.catalog.next_seq(conn)
                    self.catalog.upsert(conn, res, payload.get("text") or "")
                    idem = payload.get("idempotency")
                    if idem:
                        conn.execute("DELETE FROM idempotency WHERE workspace=? AND key=?",
                                     (idem[0], idem[1]))
                        self.catalog.put_idempotency(conn, idem[0], idem[1], idem[2],
                                                     res.id, self.now())
                    outcome = "rolled_forward"
                self.catalog.drop_intent(conn, intent_id)
            return outcome
        if kind == "delete":
            with self.catalog.transaction() as conn:
                still_used = self.catalog.by_location(conn, payload["connection"],
                                                      payload["key"])
            if still_used is None:
                backend.delete(payload["key"])
            with self.catalog.transaction() as conn:
                self.catalog.drop_intent(conn, intent_id)
            return "deletes_finished"
        return None       # gc: finished by the service (it knows what expired means)

    def _quarantine_intent(self, intent_id: int, kind: str, payload: dict,
                           exc: Exception) -> None:
        """Move an intent recovery cannot finish out of the way, kept whole for an
        operator (``doctor`` lists them), so the next start does not trip on it again."""
        self.log(f"recovery: intent {intent_id} ({kind}) set aside: {exc!r}")
        self.catalog.quarantine_intent(intent_id, kind, payload, repr(exc), self.now())


def _json(obj: object) -> str:
    import json
    return json.dumps(obj)

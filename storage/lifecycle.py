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

Concurrent persists are group-committed (``storage.group``): one pass under the lock
does steps 2-4 for every persist waiting, with one transaction for their intents, one
for their records and one fsync per folder; each is acknowledged after that pass. The
bytes were staged, fsynced, hashed and extracted before, outside any lock.

Order of a delete: one transaction removes the record, enqueues the index delete and
records an intent to unlink the blob; then the blob is unlinked and the intent dropped.
A crash in between is finished by recovery. Search never shows a record-less document
for long: the outbox entry is in the same transaction as the record's removal.
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .config import DEFAULT_CONNECTION
from .backend import BlobWriter, StorageBackend
from .catalog import Catalog
from .errors import Conflict, IdempotencyConflict, Unavailable, from_os_error
from .events import emit
from .faults import fault
from .group import GroupCommit, Pending
from .records import Resource

#: A persist handed to the group: (writer, record, text, idempotency).
PersistItem = tuple[BlobWriter, Resource, str, "tuple[str, str, str] | None"]


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


#: Age after which a staged upload nobody on this node owns counts as abandoned, when
#: several nodes share the catalog (and so the S3 buckets).
SHARED_STAGING_GRACE = 3600.0


def commit_lock_for(catalog: Catalog, path: Path) -> Any:
    """The commit lock of this catalog: a database lock when the catalog is shared by
    several nodes (PostgreSQL), else a flock on ``path`` in the data home."""
    factory = getattr(catalog.database, "commit_lock", None)
    return factory() if factory is not None else CommitLock(path)


class Lifecycle:
    def __init__(self, catalog: Catalog, backends: Mapping[str, StorageBackend],
                 lock: CommitLock, now: Callable[[], float],
                 log: Callable[[str], None]) -> None:
        self.catalog = catalog
        self.backends = backends
        self.lock = lock
        self.now = now
        self.log = log
        self._group: GroupCommit[PersistItem] = GroupCommit(self._persist_batch)
        self._fsync_pool: ThreadPoolExecutor | None = None
        #: Admission check run under the commit lock before anything is published
        #: (quotas): ``admit(res, current, pending)`` raises to refuse the persist.
        self.admit: Callable[..., None] | None = None

    def _fsyncs(self) -> ThreadPoolExecutor:
        if self._fsync_pool is None:
            self._fsync_pool = ThreadPoolExecutor(16, thread_name_prefix="fsync")
        return self._fsync_pool

    # -- persist -------------------------------------------------------------------------
    def commit_persist(self, writer: BlobWriter, res: Resource, text: str,
                       idempotency: tuple[str, str, str] | None = None
                       ) -> tuple[Resource, bool, bool]:
        """Steps 2-4 of a persist, group-committed with concurrent ones. Returns
        (record, created, replayed); a replay (the idempotency key was committed by
        another request meanwhile) published nothing, and the caller drops its bytes."""
        outcome = self._group.submit((writer, res, text, idempotency))
        if len(outcome) == 4:
            # Another thread may have led the pass: make this thread's "latest change"
            # the one it asked for, so a wait-for=indexed waits for the right position.
            self.catalog.changes.note_position(outcome[3])
        return outcome[:3]

    def _persist_batch(self, batch: list[Pending[PersistItem]]) -> None:
        with self.lock.held():
            live: list[Pending[PersistItem]] = []
            seen: dict[tuple[str, str], Resource] = {}
            keys: dict[tuple[str, str], tuple[str, Resource]] = {}
            pending: dict = {}          # what earlier persists of this pass add (quotas)
            with self.catalog.transaction() as conn:
                for p in batch:
                    writer, res, text, idem = p.item
                    if idem:
                        ws, key, request_hash = idem
                        earlier = keys.get((ws, key))
                        found = (earlier[0], earlier[1].id) if earlier else \
                            self.catalog.idempotency.get(ws, key, conn)
                        if found is not None:
                            stored_hash, rid = found
                            replay = earlier[1] if earlier else self.catalog.resources.get(rid, conn)
                            if stored_hash != request_hash:
                                p.error = IdempotencyConflict(
                                    f"Idempotency-Key {key!r} was already used with a "
                                    f"different body or spec")
                                continue
                            if replay is not None:
                                p.result = (replay, False, True)
                                continue
                    loc = (res.connection, res.path)
                    current = seen.get(loc) or self.catalog.resources.by_location(*loc, conn)
                    if current is not None:
                        if current.type != res.type:
                            p.error = Conflict(f"a {current.type} resource already lives at "
                                               f"{res.path}; a {res.type} cannot replace it")
                            continue
                        res.id, res.created_at = current.id, current.created_at
                        res.version = current.version + 1
                    if self.admit is not None:
                        try:
                            self.admit(res, current, pending)
                        except Exception as exc:  # noqa: BLE001 - this persist is refused
                            p.error = exc
                            continue
                    p.result = (res, current is None, False)
                    seen[loc] = res
                    if idem:
                        keys[(idem[0], idem[1])] = (idem[2], res)
                    live.append(p)
            if not live:
                return
            fault("persist.before_intent")
            with self.catalog.transaction() as conn:
                intents = [self.catalog.intents.add(conn, "persist", {
                    "staging": w.staging_ref, "connection": r.connection, "row": r.to_row(),
                    "text": t, "idempotency": list(i) if i else None}, self.now())
                    for w, r, t, i in (p.item for p in live)]
            fault("persist.before_publish")
            folders: dict[str, BlobWriter] = {}
            published: list[tuple[Pending[PersistItem], int]] = []
            failed: list[int] = []
            for p, intent in zip(live, intents):
                writer = p.item[0]
                # A backend whose writers can share a folder barrier (local files) gets
                # one fsync per folder; any other makes each publish durable itself.
                grouped = writer.folder_barrier
                try:
                    writer.publish(durable=not grouped)
                except Exception as exc:  # noqa: BLE001 - this persist fails, not the group
                    # Nothing was placed (a refused path, a lost S3 condition): the intent
                    # goes below, so recovery never rolls it forward, and the staged
                    # bytes go now. A filesystem refusal becomes its precise error.
                    writer.abort()
                    typed = from_os_error(exc, p.item[1].path) \
                        if isinstance(exc, OSError) else None
                    p.error, p.result = typed or exc, None
                    failed.append(intent)
                    continue
                if grouped:
                    folders.setdefault(writer.folder_ref(), writer)
                published.append((p, intent))
            # One fsync per folder, all at once: the filesystem's journal commits them
            # together, where one after another each would wait for its own commit.
            list(self._fsyncs().map(lambda w: w.sync_folder(), folders.values()))
            fault("persist.after_publish")
            with self.catalog.transaction() as conn:
                for p, intent in published:
                    _, res, text, idem = p.item
                    res.seq = self.catalog.changes.next_seq(conn)
                    self.catalog.resources.upsert(conn, res, text)
                    # The change's position, for the caller (not this leader thread) to
                    # wait on: see Catalog.note_position.
                    p.result = (*p.result, self.catalog.changes.last_position())
                    if idem:
                        ws, key, request_hash = idem
                        self.catalog.idempotency.put(conn, ws, key, request_hash, res.id,
                                                     self.now())
                    self.catalog.intents.drop(conn, intent)
                for intent in failed:      # nothing was renamed for these
                    self.catalog.intents.drop(conn, intent)
            fault("persist.after_commit")
        for p, _ in published:
            res, created = p.item[1], p.result[1]
            emit("persist", tier=res.tier, connection=res.connection, bytes=res.size,
                 created=created)

    def publish_many(self, items: list[tuple[BlobWriter, Resource, str]],
                     backend: StorageBackend) -> list[tuple[Resource, bool]]:
        """The bulk form of ``publish``: the same steps and intents, but one transaction
        for all intents, one for all records, and one durability barrier instead of an
        fsync per file and folder. The staged bytes must be durable already
        (``backend.sync_barrier()`` after ``finish(durable=False)``)."""
        out: list[tuple[Resource, bool]] = []
        with self.lock.held():
            seen: dict[tuple[str, str], Resource] = {}
            pending: dict = {}          # what earlier items of this batch add (quotas)
            with self.catalog.transaction() as conn:
                for _, res, _ in items:
                    loc = (res.connection, res.path)
                    current = seen.get(loc) or self.catalog.resources.by_location(*loc, conn)
                    if current is not None:
                        if current.type != res.type:
                            raise Conflict(f"a {current.type} resource already lives at "
                                           f"{res.path}; a {res.type} cannot replace it")
                        res.id, res.created_at = current.id, current.created_at
                        res.version = current.version + 1
                    if self.admit is not None:
                        self.admit(res, current, pending)
                    out.append((res, current is None))
                    seen[loc] = res
                fault("persist.before_intent")
                intents = [self.catalog.intents.add(conn, "persist", {
                    "staging": w.staging_ref, "connection": r.connection, "row": r.to_row(),
                    "text": t, "idempotency": None}, self.now()) for w, r, t in items]
            fault("persist.before_publish")
            failed: dict[int, BaseException] = {}
            try:
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
            except Conflict:
                # Some of the group are published, one lost its condition, the rest are
                # still staged: settle each intent from what the backend holds now (the
                # same decisions as after a crash), so no record is missing or invented.
                self.recover()
                raise
            backend.sync_barrier()
            fault("persist.after_publish")
            with self.catalog.transaction() as conn:
                for i, ((_, res, text), intent) in enumerate(zip(items, intents)):
                    if i in failed:
                        continue
                    res.seq = self.catalog.changes.next_seq(conn)
                    self.catalog.resources.upsert(conn, res, text)
                    self.catalog.intents.drop(conn, intent)
            fault("persist.after_commit")
        for i, (res, created) in enumerate(out):
            if i not in failed:
                emit("persist", tier=res.tier, connection=res.connection, bytes=res.size,
                     created=created)
        if failed:
            raise next(iter(failed.values()))
        return out

    def _refused(self, writer: BlobWriter, intent: int, exc: OSError, key: str) -> None:
        """The filesystem refused a publish: nothing was placed, so the intent goes
        (recovery must never roll it forward) and the staged bytes with it."""
        writer.abort()
        with self.catalog.transaction() as conn:
            self.catalog.intents.drop(conn, intent)
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
                    self.catalog.resources.delete(conn, res.id)
                    intents.append(self.catalog.intents.add(conn, "delete", {
                        "connection": res.connection, "key": res.path, "id": res.id},
                        self.now()))
            fault("delete.after_record")
            for res in resources:
                self.backends[res.connection].delete(res.path)
            fault("delete.after_blob")
            with self.catalog.transaction() as conn:
                for intent in intents:
                    self.catalog.intents.drop(conn, intent)

    # -- recovery ------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Finish or roll back what a crashed process left half-done. One intent that
        cannot be finished (the filesystem refuses its path, its payload is damaged) is
        set aside in quarantine and reported; it never stops the start."""
        counts = {"rolled_back": 0, "rolled_forward": 0, "deletes_finished": 0,
                  "staging_removed": 0, "quarantined": 0}
        with self.lock.held():
            for intent_id, kind, payload in self.catalog.intents.pending():
                try:
                    outcome = self._recover_one(intent_id, kind, payload)
                except Unavailable as exc:
                    # Decided when the connection is back (next start or doctor --repair).
                    self.log(f"recovery: intent {intent_id} left for later: {exc}")
                    continue
                except Exception as exc:      # noqa: BLE001 - one bad intent, not a crash
                    self._quarantine_intent(intent_id, kind, payload, exc)
                    outcome = "quarantined"
                if outcome:
                    counts[outcome] += 1
            for backend in self.backends.values():
                try:
                    staged = list(backend.list_staging())
                except (OSError, Unavailable) as exc:
                    self.log(f"recovery: staged writes of {backend.describe()} left: {exc}")
                    continue
                for ref, mtime in staged:
                    # On a shared catalog another node may be streaming into the same
                    # bucket right now (its writers are invisible from here): only what
                    # is old enough to be abandoned goes.
                    if self.catalog.shared and time.time() - mtime < SHARED_STAGING_GRACE:
                        continue
                    backend.discard_staging(ref)
                    counts["staging_removed"] += 1
        if any(counts.values()):
            self.log(f"recovery: {counts}")
        return counts

    def _recover_one(self, intent_id: int, kind: str, payload: dict) -> str | None:
        backend = self.backends.get(payload.get("connection", DEFAULT_CONNECTION))
        if backend is None:
            return None
        if kind == "persist":
            if backend.staging_exists(payload["staging"]):
                backend.discard_staging(payload["staging"])
                with self.catalog.transaction() as conn:
                    self.catalog.intents.drop(conn, intent_id)
                return "rolled_back"
            res = Resource.from_row(payload["row"])
            # What the backend really holds decides: on S3 the object's ETag must be the
            # one the staged write would have produced, not another writer's; locally a
            # folder, a link or a file of another size is not this persist's blob.
            exists = backend.holds(payload["staging"], res.path)
            if exists:
                try:
                    exists = backend.stat(res.path).size == res.size
                except FileNotFoundError:
                    exists = False
            outcome = None
            with self.catalog.transaction() as conn:
                current = self.catalog.resources.get(res.id, conn)
                if exists and (current is None or current.sha256 != res.sha256
                               or current.version < res.version):
                    res.seq = self.catalog.changes.next_seq(conn)
                    self.catalog.resources.upsert(conn, res, payload.get("text") or "")
                    idem = payload.get("idempotency")
                    if idem:
                        self.catalog.idempotency.put(conn, idem[0], idem[1], idem[2],
                                                     res.id, self.now())
                    outcome = "rolled_forward"
                self.catalog.intents.drop(conn, intent_id)
            backend.discard_staging(payload["staging"])   # S3: the spool file, if left
            return outcome
        if kind == "delete":
            with self.catalog.transaction() as conn:
                still_used = self.catalog.resources.by_location(
                    payload["connection"], payload["key"], conn)
            if still_used is None:
                backend.delete(payload["key"])
            with self.catalog.transaction() as conn:
                self.catalog.intents.drop(conn, intent_id)
            return "deletes_finished"
        return None       # gc: finished by the service (it knows what expired means)

    def _quarantine_intent(self, intent_id: int, kind: str, payload: dict,
                           exc: Exception) -> None:
        """Move an intent recovery cannot finish out of the way, kept whole for an
        operator (``doctor`` lists them), so the next start does not trip on it again."""
        self.log(f"recovery: intent {intent_id} ({kind}) set aside: {exc!r}")
        self.catalog.intents.quarantine(intent_id, kind, payload, repr(exc), self.now())


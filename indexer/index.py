"""The Tantivy index: one elected writer, following the catalog's change log by position.

Every catalog change to a resource appends a row to ``changes`` in the same transaction
(see ``storage.catalog``). ``sync()`` applies the log past this index's position: it
reads the current records, deletes each id's document by term and re-adds it when the
record still exists, commits once, and only then stores the new position in the index
directory (``APPLIED``, fsynced, renamed into place) and in the catalog's ``followers``
table. A crash between the commit and the position re-applies a batch on the next start:
harmless, every application is an idempotent upsert of the current record. Whoever
holds the in-process lock applies everything pending, so concurrent writes share one
commit (group commit).

One process at a time writes an index: the holder of its ``LeaderLock`` (an flock taken
over when the holder dies). Others only read, and reload when ``APPLIED`` moves;
``wait_for(position)`` is how a write waits until this process's searches show it.
Several indexes (several link paths) can follow one catalog, each with its own position
and lock; the log is pruned only behind all of them, and an index found behind the
pruned end is rebuilt.

``<home>/index`` is a symlink to the live ``index-<id>`` directory; a rebuild writes a
new directory, then swaps the link atomically, so searches keep answering meanwhile.
The live directory holds one Tantivy index per partition (partitions.py): the shared
one at its root and one under ``parts/`` per big workspace. A batch commits every
partition it touched, then records the position: a crash between two partitions'
commits re-applies the batch, idempotently, like a crash before the position.

The read side (one query per search, paging, totals, facets, snippets) is in reader.py.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import tantivy

from storage.catalog import Catalog
from storage.errors import IndexBusy
from storage.events import emit
from storage.faults import fault

from .leader import LeaderLock
from .partitions import PartitionPolicy, Partitions
from .query import expired_query
from .reader import TOTAL_THRESHOLD, IndexReader
from .schema import SCHEMA_VERSION, build_schema, make_document

VERSION_FILE = "SCHEMA_VERSION"
APPLIED_FILE = "APPLIED"
WRITER_HEAP = 50_000_000


class SearchIndex(IndexReader):
    #: Exact totals up to here (an attribute so tests can lower it on a real index).
    total_threshold: int = TOTAL_THRESHOLD

    def __init__(self, link: Path, catalog: Catalog, lock_wait: float = 30.0,
                 log: Callable[[str], None] | None = None,
                 policy: PartitionPolicy | None = None) -> None:
        self.link = link
        self.catalog = catalog
        self.lock_wait = lock_wait
        #: Which workspaces the next rebuild gives their own partition.
        self.policy = policy or PartitionPolicy()
        self.schema = build_schema()
        self._lock = threading.RLock()
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._target: str | None = None
        self._parts: Partitions | None = None
        self.leader = LeaderLock(link.parent / "locks" / f"{link.name}-writer.lock")
        #: The elected writer's Tantivy writers, per partition of the live directory
        #: named first (writers of a directory swapped out are dropped).
        self._held_writers: tuple[str | None, dict[str, tantivy.IndexWriter]] = (None, {})
        #: The change-log position this process's reader shows (applied and reloaded).
        self._applied = 0
        self._applied_cond = threading.Condition()
        self.open()

    # -- opening, version check, rebuild -------------------------------------------------
    def _version_ok(self, directory: Path) -> bool:
        try:
            return (directory / VERSION_FILE).read_text().strip() == str(SCHEMA_VERSION)
        except OSError:
            return False

    def open(self) -> None:
        """Open the live index; rebuild from the catalog if missing, stale or corrupt."""
        with self._lock:
            target = os.readlink(self.link) if self.link.is_symlink() else None
            directory = self.link.parent / target if target else None
            reason = None
            if directory is None or not directory.is_dir():
                reason = "missing"
            elif not self._version_ok(directory):
                reason = "schema version changed"
            else:
                try:
                    parts = Partitions.open(directory, self.schema)
                except BaseException as exc:  # noqa: BLE001 - tantivy panics are BaseException
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    reason = f"unreadable ({str(exc)[:120]})"
                else:
                    assert directory is not None and target is not None
                    applied = self._opening_position(directory)
                    if applied is None:
                        reason = "without a readable change-log position"
                    elif applied < self.catalog.changes.pruned_through():
                        reason = "behind the pruned end of the change log"
                    else:
                        old = self._target
                        self._parts, self._target = parts, target
                        self._set_applied(applied, reset=True)
                        self.catalog.changes.set_follower(target, applied)
                        if old and old != target:
                            self.catalog.changes.drop_follower(old)
                        self._remove_strays()     # left by a reindex that was killed
                        return
            if self.link.exists() and not self.link.is_symlink():
                # An old plain directory at the link path: move it aside first.
                shutil.rmtree(self.link, ignore_errors=True)
            if reason != "missing" or self.catalog.resources.count():
                # A fresh data home builds its empty index silently (clean stderr).
                self._log(f"search index {reason}: rebuilding from the catalog")
            self.rebuild()

    def _current(self, workspace: str | None = None) -> tantivy.Index:
        """The live partition of ``workspace`` (the shared one without)."""
        return self._live().for_workspace(workspace)

    def _live(self) -> Partitions:
        """The live partitions, reopened if another process swapped the link."""
        try:
            target = os.readlink(self.link)
        except OSError:
            target = None
        if target is not None and target == self._target and self._parts is not None and \
                not self._parts.present():
            # The live directory was deleted under us (an operator, a cleanup script):
            # without this, writes would go unindexed until a restart while health said
            # ok. Rebuild from the catalog now; it holds every record and its text.
            self._log("search index directory is gone: rebuilding from the catalog")
            self._parts = None
            self._target = None
            target = None
        if target != self._target or self._parts is None:
            with self._lock:
                try:
                    target = os.readlink(self.link)
                except OSError:
                    target = None
                if target != self._target or self._parts is None:
                    self.open()
        assert self._parts is not None
        return self._parts

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build a fresh index from the catalog in a new directory and swap it in."""
        with self._lock:
            new_name = f"index-{uuid.uuid4().hex[:12]}"
            new_dir = self.link.parent / new_name
            new_dir.mkdir(parents=True)
            # Every change up to here is in the records read below; the rest is applied
            # from the log afterwards. Registering first keeps pruning behind it meanwhile.
            position = self.catalog.changes.head()
            self.catalog.changes.set_follower(new_name, position)
            self.catalog.changes.take_legacy_outbox_flag()
            counts: dict[str, int] = {}
            for ws, _tier, n, _size in self.catalog.resources.usage_by_tier():
                counts[ws] = counts.get(ws, 0) + n
            parts = Partitions.create(new_dir, self.schema, self.policy.plan(counts))
            # One writer per partition, one pass over the catalog (peak memory: a writer
            # heap per partition, bounded by PartitionPolicy.max_dedicated).
            writers = {name: index.writer(WRITER_HEAP, 1) for name, index in parts.items()}
            total = self.catalog.resources.count()
            done = 0
            batch: list = []
            for res in self.catalog.resources.all():
                batch.append(res)
                if len(batch) >= 1000:
                    done += self._add_batch(parts, writers, batch)
                    batch = []
                    if progress:
                        progress(done, total)
            done += self._add_batch(parts, writers, batch)
            if progress:
                progress(done, total)
            for writer in writers.values():
                writer.commit()
                writer.wait_merging_threads()
            (new_dir / VERSION_FILE).write_text(str(SCHEMA_VERSION))
            _write_position(new_dir, position)
            tmp_link = self.link.parent / f".index-link-{uuid.uuid4().hex[:8]}"
            os.symlink(new_name, tmp_link)
            old = os.readlink(self.link) if self.link.is_symlink() else None
            os.replace(tmp_link, self.link)
            parts.reload()
            self._parts, self._target = parts, new_name
            self._set_applied(position, reset=True)
            if old and old != new_name:
                self.catalog.changes.drop_follower(old)
                # Open searchers keep their mmaps; the files go when the last one closes.
                shutil.rmtree(self.link.parent / old, ignore_errors=True)
            self._remove_strays()
            return done

    def _remove_strays(self) -> None:
        for p in self.link.parent.glob("index-*"):
            if p.name != self._target and p.is_dir():
                # A stray from an interrupted rebuild (older than a minute): remove it.
                if time.time() - p.stat().st_mtime > 60:
                    shutil.rmtree(p, ignore_errors=True)

    def _add_batch(self, parts: Partitions, writers: dict, batch: list) -> int:
        if not batch:
            return 0
        texts = self.catalog.resources.extract_texts([r.id for r in batch])
        for res in batch:
            writers[parts.route(res.workspace)].add_document(
                make_document(res, texts.get(res.id, "")))
        return len(batch)

    # -- writing -------------------------------------------------------------------------
    def _writer(self, index: tantivy.Index, wait: float):
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                return index.writer(WRITER_HEAP, 1)
            except ValueError as exc:
                if "LockBusy" not in str(exc) and "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        "the search index is being written by another process; the change "
                        "is saved in the catalog and will be indexed by the next writer "
                        "(or point the CLI at the server with RESOURCES_API_URL)") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def sync(self, wait: float | None = None, until: int | None = None) -> int:
        """Apply the change log past this index's position, if this process is (or can
        now become) the elected writer; else only catch the reader up. Stops early once
        ``until`` is applied. Returns how many documents were touched."""
        wait = self.lock_wait if wait is None else wait
        with self._lock:
            if not self.leader.try_acquire():
                self.refresh()
                return 0
            try:
                parts = self._live()
                self.refresh()          # a previous writer (maybe dead now) got this far
                touched = 0
                while until is None or self._applied < until:
                    rows = self.catalog.changes.after(self._applied)
                    if not rows:
                        break
                    touched += self._apply(parts, rows, wait)
                return touched
            finally:
                self.leader.release()

    def _apply(self, parts: Partitions, rows: list[tuple[int, str]], wait: float) -> int:
        ids = list(dict.fromkeys(rid for _, rid in rows))
        # Records are read after the log rows: they are as new as the rows or newer, and
        # a newer state is re-applied by its own later row anyway (idempotent upserts).
        records = self.catalog.resources.get_many(ids)
        texts = self.catalog.resources.extract_texts([i for i in ids if i in records])
        # Which partitions each id is deleted from (and re-added to): its workspace's,
        # and any other that holds it (a deleted record's workspace is unknown). With
        # one partition there is nothing to look up. The reload shows commits of a
        # writer that died before recording its position, so none is missed.
        plan: dict[str, list[str]] = {}
        found: dict[str, list[str]] = {}
        if len(parts) > 1:
            parts.reload()
            found = parts.locate(ids)
        for id_ in ids:
            res = records.get(id_)
            homes = set(found.get(id_, ()))
            if res is not None or len(parts) == 1:
                homes.add(parts.route(res.workspace if res is not None else None))
            for name in homes:
                plan.setdefault(name, []).append(id_)
        started = time.monotonic()
        with self._writing(parts, list(plan), wait) as writers:
            for name, part_ids in plan.items():
                writer = writers[name]
                for id_ in part_ids:
                    writer.delete_documents_by_term("id", id_)
                    res = records.get(id_)
                    if res is not None and parts.route(res.workspace) == name:
                        writer.add_document(make_document(res, texts.get(id_, "")))
            fault("index.before_commit")
            for n, name in enumerate(plan):
                if n:
                    fault("index.between_partitions")
                writers[name].commit()
            fault("index.after_commit")
        # Only after every commit: a position ahead of the index would skip changes.
        assert self._target is not None
        position = rows[-1][0]
        _write_position(self.link.parent / self._target, position)
        fault("index.after_position")
        self.catalog.changes.set_follower(self._target, position)
        parts.reload(list(plan))
        self._set_applied(position)
        emit("index.commit", documents=len(ids), seconds=time.monotonic() - started)
        return len(ids)

    def _kept_writers(self) -> dict[str, tantivy.IndexWriter]:
        target, writers = self._held_writers
        if target == self._target:
            return writers
        self._held_writers = (None, {})   # the link moved to a rebuilt index: new writers
        return {}

    def release_writer(self) -> None:
        """Let go of kept Tantivy writers (the follower stops, or leadership ends)."""
        with self._lock:
            (_, held), self._held_writers = self._held_writers, (None, {})
            for writer in held.values():
                try:
                    writer.wait_merging_threads()
                except BaseException:  # noqa: BLE001 - the commits are already durable
                    pass

    def try_sync(self) -> None:
        """Sync, but a busy writer elsewhere is only a note: the log keeps the work."""
        try:
            self.sync()
        except IndexBusy as exc:
            self._log(f"note: {exc.message}")
        except (OSError, ValueError) as exc:
            # The record is durable and acknowledged; the outbox keeps the index work
            # (a full disk under the index must not turn a done write into a 500).
            self._log(f"index catch-up failed, will retry: {str(exc)[:200]}")

    # -- positions -----------------------------------------------------------------------
    def _opening_position(self, directory: Path) -> int | None:
        position = _read_position(directory)
        if position is None and not (directory / APPLIED_FILE).exists() \
                and self.catalog.changes.take_legacy_outbox_flag():
            # An index from before the change log: the outbox rows that were left (now
            # the oldest log rows) are exactly what it had not applied.
            oldest = self.catalog.changes.oldest()
            position = oldest - 1 if oldest is not None else self.catalog.changes.head()
            _write_position(directory, position)
        return position

    def _set_applied(self, position: int, reset: bool = False) -> None:
        with self._applied_cond:
            if reset or position > self._applied:
                self._applied = position
            self._applied_cond.notify_all()

    @property
    def applied(self) -> int:
        return self._applied

    def refresh(self) -> int:
        """Show what the writer (of any process) has committed: reload when the index's
        stored position moved past what this process's reader shows."""
        parts = self._live()
        assert self._target is not None
        position = _read_position(self.link.parent / self._target)
        if position is not None and position > self._applied:
            parts.reload()
            self._set_applied(position)
        return self._applied

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until this process's searches show change ``position`` (applying the
        log itself when it can lead); False when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while self._applied < position:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sync(wait=left, until=position)
            if self._applied >= position:
                break
            with self._applied_cond:
                self._applied_cond.wait(min(0.01, left))
        return True

    @property
    def follower_name(self) -> str | None:
        """This index's row in the catalog's ``followers`` (its directory's name)."""
        return self._target

    def status(self) -> dict:
        """Position and lag of this index behind the catalog (for /healthz and meta)."""
        head = self.catalog.changes.head()
        applied = self._applied
        behind = max(head - applied, 0)
        since = self.catalog.changes.first_time_after(applied) if behind else None
        return {"position": applied, "head": head, "behind": behind,
                "lag-seconds": round(max(time.time() - since, 0.0), 3) if since else 0.0,
                "writer": self.leader.held}

    def prune(self) -> int:
        """Drop log rows every live index has applied (the elected writer calls this)."""
        return self.catalog.changes.prune()

    def sweep_expired(self, now: int) -> int:
        """Delete the documents of expired resources from the index now, ahead of gc
        (which removes their records and bytes later and logs the deletes again).

        Searches leave expired documents out by themselves (reader.py), but that costs
        every search a check per candidate while any are left: the index's own sweep
        keeps the window short (the follower runs it every few seconds). Only the
        elected writer sweeps. Other processes see the deletes at their next reload
        and stay exact meanwhile. Returns the documents removed."""
        with self._lock:
            if not self.leader.try_acquire():
                return 0
            try:
                parts = self._live()
                query = expired_query(self.schema, now)
                doomed = {name: int(n) for name, index in parts.items()
                          if (n := index.searcher().search(query, 1, count=True).count)}
                if doomed:
                    self._delete_everywhere(parts, doomed, query)
                    emit("index.expired", documents=sum(doomed.values()))
                return sum(doomed.values())
            finally:
                self.leader.release()

    def _delete_everywhere(self, parts: Partitions, names: dict[str, int],
                           query: tantivy.Query) -> None:
        with self._writing(parts, list(names), self.lock_wait) as writers:
            for writer in writers.values():
                writer.delete_documents_by_query(query)
                writer.commit()
        parts.reload(list(names))

    @contextlib.contextmanager
    def _writing(self, parts: Partitions, names: list[str],
                 wait: float) -> Iterator[dict[str, tantivy.IndexWriter]]:
        """Tantivy writers of these partitions, for one batch of commits.

        The elected writer of `serve` keeps its writers between batches (a new one per
        batch costs its threads and a wait for merges each time); anyone else takes one
        per batch and consumes it, which waits for merges and frees the lock. A failure
        rolls every one back and drops the kept ones."""
        keep = self.leader.keep
        held = self._kept_writers() if keep else {}
        writers: dict[str, tantivy.IndexWriter] = {}
        try:
            for name in names:
                writers[name] = held.get(name) or self._writer(parts.index(name), wait)
            yield writers
            if keep:
                self._held_writers = (self._target, {**held, **writers})
            else:
                for writer in writers.values():
                    writer.wait_merging_threads()
        except BaseException:
            self._held_writers = (None, {})
            for writer in writers.values():
                try:
                    writer.rollback()
                except BaseException:  # noqa: BLE001 - the first error is the one to raise
                    pass
            raise


def _read_position(directory: Path) -> int | None:
    try:
        return int((directory / APPLIED_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _write_position(directory: Path, position: int) -> None:
    """Durably replace the stored position (fsync, then an atomic rename): after a power
    loss the file holds the old or the new number, never a torn one."""
    tmp = directory / f".{APPLIED_FILE}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{position}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / APPLIED_FILE)

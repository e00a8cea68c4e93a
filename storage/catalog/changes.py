"""The change log, its followers and the write sequence.

One row per change to a resource, appended in the transaction of the change itself, with
a position handed out under the catalog's write serialisation: positions commit in order,
so a reader that sees position N sees every position below it. Indexes (and any other
derived replica) follow the log by position and record how far they got in
``followers``; the log is pruned only behind every live follower.
"""
from __future__ import annotations

import threading
import time

from .database import Database, Tx


class ChangeLog:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._local = threading.local()

    # -- writing -------------------------------------------------------------------------
    def append(self, tx: Tx, resource_id: str) -> int:
        """Append a change of ``resource_id`` inside the caller's transaction; returns its
        position (also remembered as this thread's latest change)."""
        pos = int(tx.execute("INSERT INTO changes(resource_id, at) VALUES (?, ?) RETURNING pos",
                             (resource_id, time.time())).fetchone()[0])
        note = getattr(tx, "note_change", None)
        if note is not None:        # PostgreSQL: other nodes' followers are notified at commit
            note()
        self._local.last_position = pos
        return pos

    def next_seq(self, tx: Tx) -> int:
        """The next write sequence (resources and kv share it). The counter row is bumped
        inside the caller's write transaction, so values never repeat."""
        return int(tx.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq' "
                              "RETURNING value").fetchone()[0])

    def last_position(self) -> int:
        """The position of the latest change this thread wrote (0: none)."""
        return getattr(self._local, "last_position", 0)

    def note_position(self, position: int) -> None:
        """Make ``position`` this thread's latest change (written by a group-commit
        leader on this thread's behalf)."""
        self._local.last_position = position

    # -- reading -------------------------------------------------------------------------
    def head(self) -> int:
        """The highest position committed (pruning never removes the newest row's
        number from view: it is kept as ``changes_pruned_through``)."""
        row = self.database.reader().execute("SELECT MAX(pos) FROM changes").fetchone()
        return max(int(row[0] or 0), self.pruned_through())

    def after(self, position: int, limit: int = 5000) -> list[tuple[int, str]]:
        return [(int(r[0]), r[1]) for r in self.database.reader().execute(
            "SELECT pos, resource_id FROM changes WHERE pos > ? ORDER BY pos LIMIT ?",
            (position, limit))]

    def first_time_after(self, position: int) -> float | None:
        """When the oldest change past ``position`` was written (lag in seconds)."""
        row = self.database.reader().execute(
            "SELECT at FROM changes WHERE pos > ? ORDER BY pos LIMIT 1", (position,)).fetchone()
        return float(row[0]) if row else None

    def oldest(self) -> int | None:
        row = self.database.reader().execute("SELECT MIN(pos) FROM changes").fetchone()
        return int(row[0]) if row[0] is not None else None

    def pruned_through(self) -> int:
        row = self.database.reader().execute(
            "SELECT value FROM meta WHERE key = 'changes_pruned_through'").fetchone()
        return int(row[0]) if row else 0

    # -- followers -----------------------------------------------------------------------
    def set_follower(self, name: str, position: int) -> None:
        """Record that follower ``name`` applied the log through ``position``. A
        follower's position only moves forward (a rebuilt index gets a new name)."""
        with self.database.transaction() as tx:
            tx.execute("INSERT INTO followers(name, position, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET position = CASE WHEN "
                       "excluded.position > followers.position THEN excluded.position "
                       "ELSE followers.position END, updated_at = excluded.updated_at",
                       (name, position, time.time()))

    def drop_follower(self, name: str) -> None:
        with self.database.transaction() as tx:
            tx.execute("DELETE FROM followers WHERE name = ?", (name,))

    def followers(self) -> dict[str, tuple[int, float]]:
        return {r[0]: (int(r[1]), float(r[2])) for r in self.database.reader().execute(
            "SELECT name, position, updated_at FROM followers")}

    def backlog(self) -> int:
        """Changes the slowest registered follower has not applied yet."""
        row = self.database.reader().execute("SELECT MIN(position) FROM followers").fetchone()
        behind = int(row[0]) if row[0] is not None else 0
        return max(self.head() - behind, 0)

    def prune(self, stale_after: float = 7 * 86_400) -> int:
        """Drop log rows every live follower has applied; returns how many. A follower
        not heard from in ``stale_after`` seconds no longer holds the log back: if it
        comes back behind the pruned end, it rebuilds (see ``indexer.index``)."""
        with self.database.transaction() as tx:
            row = tx.execute("SELECT MIN(position) FROM followers WHERE updated_at > ?",
                             (time.time() - stale_after,)).fetchone()
            if row[0] is None:
                return 0
            horizon = int(row[0])
            head = int(tx.execute("SELECT COALESCE(MAX(pos), 0) FROM changes").fetchone()[0])
            gone = tx.execute("DELETE FROM changes WHERE pos <= ?", (horizon,)).rowcount
            # Remember how far the log reached, so head() stays right with no rows left.
            through = min(horizon, max(head, self.pruned_through()))
            if through > self.pruned_through():
                tx.execute("INSERT INTO meta(key, value) VALUES ('changes_pruned_through', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (str(through),))
            return int(gone)

    def take_legacy_outbox_flag(self) -> bool:
        """True once after the migration from the outbox, if the catalog had writes."""
        with self.database.transaction() as tx:
            return tx.execute("DELETE FROM meta WHERE key = 'legacy_outbox'").rowcount > 0

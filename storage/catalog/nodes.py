"""Service nodes sharing one catalog: heartbeats, and background jobs taken once.

A node is one `resources serve` data home (its own index, its own follower of the change
log). Every second or so it writes ``nodes(name, url, follower, started_at,
heartbeat_at)``; its index's applied position is the ``followers`` row it names, so the
listing and ``wait-for=all`` read positions that move with every index commit, not once
per heartbeat. A node not heard from for ``live_within`` seconds is no longer waited for.

Background jobs (gc, expiry sweeps) are due at a time kept in ``meta`` (``due:<job>``);
``claim_due`` moves that time forward in a write transaction, so of several nodes that
find a job due at once exactly one gets it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Database


@dataclass
class NodeRow:
    name: str
    url: str | None
    follower: str | None
    started_at: float
    heartbeat_at: float
    position: int | None        # the follower's applied position (None: not registered)


class Nodes:
    def __init__(self, database: Database) -> None:
        self.database = database

    def heartbeat(self, name: str, url: str | None, follower: str | None, started_at: float,
                  now: float) -> None:
        with self.database.transaction() as tx:
            tx.execute("INSERT INTO nodes(name, url, follower, started_at, heartbeat_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "url = excluded.url, follower = excluded.follower, "
                       "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                       (name, url, follower, started_at, now))

    def remove(self, name: str) -> None:
        with self.database.transaction() as tx:
            tx.execute("DELETE FROM nodes WHERE name = ?", (name,))

    def list(self) -> list[NodeRow]:
        return [NodeRow(r[0], r[1], r[2], float(r[3]), float(r[4]),
                        None if r[5] is None else int(r[5]))
                for r in self.database.reader().execute(
                    "SELECT n.name, n.url, n.follower, n.started_at, n.heartbeat_at, "
                    "f.position FROM nodes n LEFT JOIN followers f ON f.name = n.follower "
                    "ORDER BY n.name")]

    def slowest_live(self, now: float, live_within: float) -> tuple[int, int]:
        """(the lowest applied position among live nodes, how many live nodes); a live
        node whose follower is not registered yet counts as position 0."""
        row = self.database.reader().execute(
            "SELECT MIN(COALESCE(f.position, 0)), COUNT(*) FROM nodes n LEFT JOIN followers f "
            "ON f.name = n.follower WHERE n.heartbeat_at > ?", (now - live_within,)).fetchone()
        return int(row[0] or 0), int(row[1])

    # -- background jobs -----------------------------------------------------------------
    def claim_due(self, job: str, now: float, interval: float) -> bool:
        """True for exactly one caller per due time: the job was due (or never ran) and
        its next due time is now ``now + interval``."""
        with self.database.transaction() as tx:
            row = tx.execute("SELECT value FROM meta WHERE key = ?", (f"due:{job}",)).fetchone()
            if row is not None and float(row[0]) > now:
                return False
            tx.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                       "DO UPDATE SET value = excluded.value", (f"due:{job}", repr(now + interval)))
            return True

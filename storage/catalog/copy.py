"""Copying a catalog into another (``resources migrate``: a SQLite home into a shared
PostgreSQL catalog), resumable and verifiable.

Tables are copied row for row in key order, a batch per transaction, and a row already in
the target is left as it is (``ON CONFLICT DO NOTHING``): a copy that was interrupted is
finished by running it again. Not copied: the change log and followers (the target's
nodes build their indexes from the records), intents (the source is recovered before it
is copied) and upload sessions (short-lived, bound to the source's staging).

``digest`` is order independent (the sum of per-row sha256s), so the two databases'
different orderings of text never make equal tables look different.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from .database import Database

#: (table, its key columns): what a migration copies, in this order.
TABLES: list[tuple[str, tuple[str, ...]]] = [
    ("resources", ("id",)), ("extracts", ("id",)), ("slots", ("workspace", "name")),
    ("idempotency", ("workspace", "key")), ("api_keys", ("id",)),
    ("kv", ("workspace", "key")), ("picker_origins", ("workspace", "origin")),
    ("ended_sessions", ("id",)),
]


def _page(db: Database, table: str, key: tuple[str, ...], after: tuple | None,
          limit: int) -> tuple[list[str], list[tuple]]:
    order = ", ".join(key)
    where, params = "", []
    if after is not None:
        where = f"WHERE ({order}) > ({', '.join('?' * len(key))})"
        params = list(after)
    cur = db.reader().execute(f"SELECT * FROM {table} {where} ORDER BY {order} LIMIT ?",
                              [*params, limit])
    return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]


def copy_table(src: Database, dst: Database, table: str, key: tuple[str, ...],
               batch: int = 1000, progress: Callable[[str, int], None] | None = None) -> int:
    """Copy every row of ``table`` that the target lacks; returns the rows read."""
    after: tuple | None = None
    done = 0
    while True:
        cols, rows = _page(src, table, key, after, batch)
        if not rows:
            return done
        names = ", ".join(cols)
        with dst.transaction() as tx:
            tx.executemany(f"INSERT INTO {table} ({names}) VALUES "
                           f"({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING", rows)
        done += len(rows)
        after = tuple(rows[-1][cols.index(k)] for k in key)
        if progress:
            progress(table, done)


def carry_sequence(src: Database, dst: Database) -> None:
    """The target's write sequence continues after the source's (records keep their
    ``seq``: it orders listings, and a new write must sort after every copied one)."""
    row = src.reader().execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
    with dst.transaction() as tx:
        tx.execute("UPDATE counters SET value = ? WHERE name = 'seq' AND value < ?",
                   (int(row[0]), int(row[0])))


def _norm(value: object) -> object:
    # SQLite may hand back an integral REAL as an int where PostgreSQL says float.
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else value


def digest(db: Database, table: str, key: tuple[str, ...]) -> tuple[int, str]:
    """(row count, an order-independent sha256 of every row's values)."""
    total, count, after = 0, 0, None
    while True:
        cols, rows = _page(db, table, key, after, 5000)
        if not rows:
            return count, f"{total % (1 << 256):064x}"
        order = sorted(range(len(cols)), key=lambda i: cols[i])     # column order may differ
        for row in rows:
            line = json.dumps([_norm(row[i]) for i in order], default=str)
            total += int(hashlib.sha256(line.encode()).hexdigest(), 16)
        count += len(rows)
        after = tuple(rows[-1][cols.index(k)] for k in key)

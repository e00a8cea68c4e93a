"""Rows of the KV pointer store (the rules — keys, TTLs, compare-and-set — live in
``storage.kv``). A row is (workspace, key, value JSON text, version, created_at,
updated_at, expires_at, seq)."""
from __future__ import annotations

from typing import Any, Iterator

from .database import Database, Tx

KvRow = tuple[str, str, str, int, float, float, "float | None", int]
_COLS = "workspace, key, value, version, created_at, updated_at, expires_at, seq"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class KvRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, workspace: str, key: str, tx: Tx | None = None) -> KvRow | None:
        row = (tx or self.database.reader()).execute(
            f"SELECT {_COLS} FROM kv WHERE workspace = ? AND key = ?", (workspace, key)).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def put(self, tx: Tx, row: KvRow) -> None:
        tx.execute(f"INSERT INTO kv({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT(workspace, key) DO UPDATE SET value = excluded.value, "
                   "version = excluded.version, created_at = excluded.created_at, "
                   "updated_at = excluded.updated_at, expires_at = excluded.expires_at, "
                   "seq = excluded.seq", row)

    def delete(self, tx: Tx, workspace: str, key: str) -> None:
        tx.execute("DELETE FROM kv WHERE workspace = ? AND key = ?", (workspace, key))

    def page(self, workspace: str, prefix: str, now: float, before_seq: int | None,
             limit: int) -> tuple[list[KvRow], int]:
        """Live rows under ``prefix``, newest set first, below ``before_seq``; and the
        total of live rows under the prefix."""
        where = f"workspace = ? AND substr(key, 1, ?) = ? AND {_LIVE}"
        params: list[Any] = [workspace, len(prefix), prefix, now]
        reader = self.database.reader()
        total = int(reader.execute(f"SELECT COUNT(*) FROM kv WHERE {where}", params).fetchone()[0])
        if before_seq is not None:
            where += " AND seq < ?"
            params.append(before_seq)
        rows = reader.execute(f"SELECT {_COLS} FROM kv WHERE {where} ORDER BY seq DESC LIMIT ?",
                              [*params, limit]).fetchall()
        return [tuple(r) for r in rows], total  # type: ignore[misc]

    def expired(self, now: float) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.database.reader().execute(
            "SELECT workspace, key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (now,))]

    def sweep(self, now: float) -> int:
        with self.database.transaction() as tx:
            return int(tx.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND "
                                  "expires_at <= ?", (now,)).rowcount)

    def live(self, now: float) -> Iterator[KvRow]:
        for r in self.database.reader().execute(
                f"SELECT {_COLS} FROM kv WHERE {_LIVE} ORDER BY workspace, key", (now,)):
            yield tuple(r)  # type: ignore[misc]

    def count(self) -> int:
        return int(self.database.reader().execute("SELECT COUNT(*) FROM kv").fetchone()[0])

"""Resource records and their extracted text.

Named queries instead of WHERE fragments: a caller says what it wants (``expired(now)``,
``of_workflow(...)``, ``under(connection, prefix)``), so no SQL leaves this package and a
second catalog implements the same names.
"""
from __future__ import annotations

from typing import Any, Iterator

from ..records import Resource
from .database import Cursor, Database, Tx, one_as_dict, placeholders, rows_as_dicts

# PostgreSQL's SUM over BIGINT is NUMERIC (a Decimal in Python): cast back to an integer.
_SUM_SIZE = "CAST(COALESCE(SUM(size), 0) AS BIGINT)"
_CHUNK = 500        # ids per IN (...) list: well below both databases' parameter limits


class Resources:
    def __init__(self, database: Database, on_change: Any) -> None:
        self.database = database
        # Every change to a record appends to the change log in the same transaction.
        self._on_change = on_change

    def _tx(self, tx: Tx | None) -> Tx:
        return tx if tx is not None else self.database.reader()

    # -- one record ----------------------------------------------------------------------
    def get(self, id_: str, tx: Tx | None = None) -> Resource | None:
        row = one_as_dict(self._tx(tx).execute("SELECT * FROM resources WHERE id = ?", (id_,)))
        return Resource.from_row(row) if row else None

    def by_location(self, connection: str, path: str, tx: Tx | None = None) -> Resource | None:
        """The record whose blob lives at ``path`` of ``connection`` (at most one)."""
        row = one_as_dict(self._tx(tx).execute(
            "SELECT * FROM resources WHERE connection = ? AND path = ?", (connection, path)))
        return Resource.from_row(row) if row else None

    def get_many(self, ids: list[str]) -> dict[str, Resource]:
        out: dict[str, Resource] = {}
        for cur in self._by_ids("*", ids):
            for row in rows_as_dicts(cur):
                out[row["id"]] = Resource.from_row(row)
        return out

    def seqs(self, ids: list[str]) -> dict[str, int]:
        """The current ``seq`` of each id that exists (RecordCache's freshness check)."""
        return {row[0]: int(row[1]) for cur in self._by_ids("id, seq", ids)
                for row in cur.fetchall()}

    def _by_ids(self, columns: str, ids: list[str]) -> Iterator[Cursor]:
        reader = self.database.reader()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            if self.database.dialect == "postgresql":
                # One statement text for any page size: prepared once per connection, where
                # IN (?, ?, ...) would be a new statement for every length.
                yield reader.execute(f"SELECT {columns} FROM resources WHERE id = ANY(?)",
                                     (chunk,))
            else:
                yield reader.execute(f"SELECT {columns} FROM resources WHERE id IN "
                                     f"({placeholders(len(chunk))})", chunk)

    def upsert(self, tx: Tx, res: Resource, text: str | None) -> int:
        """Write the record and its text; returns the change-log position."""
        row = res.to_row()
        cols = list(row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        tx.execute(f"INSERT INTO resources ({','.join(cols)}) VALUES ({placeholders(len(cols))}) "
                   f"ON CONFLICT(id) DO UPDATE SET {updates}", [row[c] for c in cols])
        tx.execute("INSERT INTO extracts(id, text) VALUES (?, ?) "
                   "ON CONFLICT(id) DO UPDATE SET text = excluded.text", (res.id, text or ""))
        return self._on_change(tx, res.id)

    def update(self, tx: Tx, res: Resource) -> int:
        """Rewrite an existing record's fields (its text stays); returns the position."""
        row = res.to_row()
        cols = [c for c in row if c != "id"]
        tx.execute(f"UPDATE resources SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
                   [row[c] for c in cols] + [res.id])
        return self._on_change(tx, res.id)

    def delete(self, tx: Tx, id_: str) -> int:
        tx.execute("DELETE FROM resources WHERE id = ?", (id_,))
        tx.execute("DELETE FROM extracts WHERE id = ?", (id_,))
        return self._on_change(tx, id_)

    # -- text ----------------------------------------------------------------------------
    def extract_text(self, id_: str) -> str:
        row = self.database.reader().execute(
            "SELECT text FROM extracts WHERE id = ?", (id_,)).fetchone()
        return row[0] if row else ""

    def extract_texts(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        reader = self.database.reader()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            out.update({r[0]: r[1] for r in reader.execute(
                f"SELECT id, text FROM extracts WHERE id IN ({placeholders(len(chunk))})",
                chunk)})
        return out

    # -- named queries -------------------------------------------------------------------
    def _iter(self, where: str, params: tuple, batch: int = 1000) -> Iterator[Resource]:
        """Keyset pages by id: memory stays flat over a million records."""
        last = ""
        reader = self.database.reader()
        while True:
            rows = rows_as_dicts(reader.execute(
                f"SELECT * FROM resources WHERE ({where}) AND id > ? ORDER BY id LIMIT {batch}",
                (*params, last)))
            if not rows:
                return
            for row in rows:
                yield Resource.from_row(row)
            last = rows[-1]["id"]

    def all(self) -> Iterator[Resource]:
        return self._iter("1=1", ())

    def in_workspace(self, workspace: str) -> Iterator[Resource]:
        return self._iter("workspace = ?", (workspace,))

    def expired(self, now: float) -> Iterator[Resource]:
        return self._iter("expires_at IS NOT NULL AND expires_at <= ?", (now,))

    def of_workflow(self, workspace: str, workflow_id: str,
                    tier: str | None = None) -> Iterator[Resource]:
        if tier is None:
            return self._iter("workspace = ? AND workflow_id = ?", (workspace, workflow_id))
        return self._iter("workspace = ? AND workflow_id = ? AND tier = ?",
                          (workspace, workflow_id, tier))

    def under(self, connection: str, prefix: str) -> Iterator[Resource]:
        """Records whose blob key starts with ``prefix`` (a folder with its slash).
        ``substr`` compares bytes-exactly in both databases, where LIKE would treat ``_``
        and ``%`` as wildcards and fold case in SQLite."""
        return self._iter("connection = ? AND substr(path, 1, ?) = ?",
                          (connection, len(prefix), prefix))

    def count(self, workspace: str | None = None) -> int:
        if workspace is None:
            return int(self.database.reader().execute(
                "SELECT COUNT(*) FROM resources").fetchone()[0])
        return int(self.database.reader().execute(
            "SELECT COUNT(*) FROM resources WHERE workspace = ?", (workspace,)).fetchone()[0])

    def storage_roots(self, workspace: str) -> list[str]:
        return [r[0] for r in self.database.reader().execute(
            "SELECT DISTINCT storage_root FROM resources WHERE workspace = ? AND "
            "storage_root IS NOT NULL ORDER BY 1", (workspace,))]

    # -- aggregates ----------------------------------------------------------------------
    def usage_groups(self, workspace: str | None = None) -> list[tuple[str, str, str, int, int]]:
        """(workspace, tier, storage root or '', count, bytes) per group."""
        where, params = ("WHERE workspace = ?", (workspace,)) if workspace else ("", ())
        return [tuple(r) for r in self.database.reader().execute(
            f"SELECT workspace, tier, COALESCE(storage_root, ''), COUNT(*), "
            f"{_SUM_SIZE} FROM resources {where} "
            f"GROUP BY workspace, tier, COALESCE(storage_root, '') ORDER BY 1, 2, 3", params)]

    def usage_by_tier(self) -> list[tuple[str, str, int, int]]:
        """(workspace, tier, count, bytes) over every workspace."""
        return [tuple(r) for r in self.database.reader().execute(
            f"SELECT workspace, tier, COUNT(*), {_SUM_SIZE} FROM resources "
            "GROUP BY workspace, tier")]

    def tier_usage(self, workspace: str, tier: str, tx: Tx | None = None) -> tuple[int, int]:
        """(bytes, count) of one workspace's tier, inside the caller's transaction when
        given (quota admission reads what the transaction has written so far)."""
        row = self._tx(tx).execute(
            f"SELECT {_SUM_SIZE}, COUNT(*) FROM resources WHERE workspace = ? "
            "AND tier = ?", (workspace, tier)).fetchone()
        return int(row[0]), int(row[1])

    def extraction_failures(self, workspace: str | None = None) -> int:
        error = ("json_extract(extraction, '$.error')" if self.database.dialect == "sqlite"
                 else "(extraction::jsonb ->> 'error')")
        where, params = ("workspace = ? AND ", (workspace,)) if workspace else ("", ())
        return int(self.database.reader().execute(
            f"SELECT COUNT(*) FROM resources WHERE {where}{error} IS NOT NULL",
            params).fetchone()[0])

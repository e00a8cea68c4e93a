"""Embedding vectors in the catalog: every SQL statement of semantic search, in one place.

Two tables (migration 8):

- ``vector_docs``: one row per embedded resource: its workspace, the record ``seq`` the
  vectors were computed from (a record with another seq is stale: replaced or changed),
  how many chunks, which model;
- ``vector_chunks``: one row per chunk: its usearch ``key`` (a 63-bit hash of id and
  chunk number, so no id counter is needed), the chunk's character span in the indexed
  text (for snippets) and the vector as float16 bytes (384 dims: 768 bytes).

Durable here, so a rebuilt vector index or a second node never recomputes an embedding.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

from .database import Database, Tx

#: The follower name of the embedder in the catalog's ``followers`` table.
FOLLOWER = "semantic"
#: Held while a full reconcile runs: keeps the log from being pruned past its start.
RECONCILE_FOLLOWER = "semantic-reconcile"


def migrate(db: Any) -> None:
    """SQLite migration 8 (sqlite_schema.py)."""
    db.execute("CREATE TABLE vector_docs (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, "
               "seq INTEGER NOT NULL, chunks INTEGER NOT NULL, model TEXT NOT NULL, "
               "updated_at FLOAT NOT NULL)")
    db.execute("CREATE INDEX vector_docs_workspace ON vector_docs (workspace)")
    db.execute("CREATE TABLE vector_chunks (id TEXT NOT NULL, chunk INTEGER NOT NULL, "
               "key INTEGER NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, "
               "vec BLOB NOT NULL, PRIMARY KEY (id, chunk))")
    db.execute("CREATE UNIQUE INDEX vector_chunks_key ON vector_chunks (key)")


def chunk_key(id_: str, chunk: int) -> int:
    """The usearch key of a chunk: stable, positive, fits SQLite's signed INTEGER."""
    digest = hashlib.blake2b(f"{id_}:{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class Chunk:
    start: int
    end: int
    vec: bytes          # float16, little-endian


class VectorStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def conn(self) -> Tx:
        return self.database.reader()

    # -- writing -------------------------------------------------------------------------
    def replace(self, id_: str, workspace: str, seq: int, model: str,
                chunks: list[Chunk]) -> list[int]:
        """Make ``chunks`` the vectors of ``id_`` (old ones go); returns their keys."""
        keys = [chunk_key(id_, i) for i in range(len(chunks))]
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM vector_chunks WHERE id = ?", (id_,))
            conn.executemany(
                "INSERT INTO vector_chunks (id, chunk, key, start_char, end_char, vec) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(id_, i, k, c.start, c.end, c.vec) for i, (k, c) in enumerate(zip(keys, chunks))])
            conn.execute(
                "INSERT INTO vector_docs (id, workspace, seq, chunks, model, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "workspace = excluded.workspace, seq = excluded.seq, chunks = excluded.chunks, "
                "model = excluded.model, updated_at = excluded.updated_at",
                (id_, workspace, seq, len(chunks), model, time.time()))
        return keys

    def forget(self, ids: list[str]) -> None:
        if not ids:
            return
        with self.database.transaction() as conn:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marks = ",".join("?" * len(part))
                conn.execute(f"DELETE FROM vector_chunks WHERE id IN ({marks})", part)
                conn.execute(f"DELETE FROM vector_docs WHERE id IN ({marks})", part)

    def clear(self) -> None:
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM vector_chunks")
            conn.execute("DELETE FROM vector_docs")

    # -- reading -------------------------------------------------------------------------
    def docs(self, ids: list[str]) -> dict[str, tuple[str, int, str]]:
        """id -> (workspace, seq, model) of the embedded ones among ``ids``."""
        out: dict[str, tuple[str, int, str]] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            q = (f"SELECT id, workspace, seq, model FROM vector_docs "
                 f"WHERE id IN ({','.join('?' * len(part))})")
            out.update({r[0]: (r[1], int(r[2]), r[3]) for r in self.conn.execute(q, part)})
        return out

    def vectors_of(self, ids: list[str]) -> Iterator[tuple[str, str, int, int, bytes]]:
        """(id, workspace, seq, key, vec) of every chunk of ``ids``."""
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            yield from self.conn.execute(
                f"SELECT c.id, d.workspace, d.seq, c.key, c.vec FROM vector_chunks c "
                f"JOIN vector_docs d ON d.id = c.id "
                f"WHERE c.id IN ({','.join('?' * len(part))})", part)

    def iter_all(self, batch: int = 5000) -> Iterator[list[tuple[str, str, int, int, bytes]]]:
        """Every chunk, in batches of (id, workspace, seq, key, vec), by key."""
        return self._iter_chunks(", c.vec", batch)

    def iter_keys(self, batch: int = 20000) -> Iterator[list[tuple[str, str, int, int]]]:
        """Every chunk's (id, workspace, seq, key), without the vectors, by key."""
        return self._iter_chunks("", batch)

    def _iter_chunks(self, extra: str, batch: int) -> Iterator[list]:
        last = -1
        while True:
            rows = self.conn.execute(
                f"SELECT c.id, d.workspace, d.seq, c.key{extra} FROM vector_chunks c "
                "JOIN vector_docs d ON d.id = c.id WHERE c.key > ? ORDER BY c.key LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][3]

    def spans(self, keys: list[int]) -> dict[int, tuple[str, int, int]]:
        """key -> (id, start, end) of each chunk (the snippet's place in the text)."""
        out: dict[int, tuple[str, int, int]] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = (f"SELECT key, id, start_char, end_char FROM vector_chunks "
                 f"WHERE key IN ({','.join('?' * len(part))})")
            out.update({int(r[0]): (r[1], int(r[2]), int(r[3])) for r in self.conn.execute(q, part)})
        return out

    def pending(self, workspace: str, model: str) -> int:
        """Resources of ``workspace`` without current vectors (not embedded yet, or
        changed since): a count over the whole workspace (doctor, a reconcile)."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM resources r LEFT JOIN vector_docs d ON d.id = r.id "
            "WHERE r.workspace = ? AND (d.id IS NULL OR d.seq != r.seq OR d.model != ?)",
            (workspace, model)).fetchone()[0])

    def pending_after(self, workspace: str, model: str, position: int) -> int:
        """The same count when every change up to ``position`` is embedded: only the
        resources changed since (cost in proportion to the backlog, not the workspace)."""
        return int(self.conn.execute(
            "SELECT COUNT(DISTINCT r.id) FROM changes c JOIN resources r ON r.id = c.resource_id "
            "LEFT JOIN vector_docs d ON d.id = r.id WHERE c.pos > ? AND r.workspace = ? "
            "AND (d.id IS NULL OR d.seq != r.seq OR d.model != ?)",
            (position, workspace, model)).fetchone()[0])

    def record_seqs(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        """id -> (workspace, seq) of the records that exist among ``ids`` (the check of
        every semantic candidate: gone or changed since its vectors, never returned)."""
        out: dict[str, tuple[str, int]] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            q = (f"SELECT id, workspace, seq FROM resources "
                 f"WHERE id IN ({','.join('?' * len(part))})")
            out.update({r[0]: (r[1], int(r[2])) for r in self.conn.execute(q, part)})
        return out

    def pending_all(self, model: str) -> int:
        """Resources of every workspace without current vectors."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM resources r LEFT JOIN vector_docs d ON d.id = r.id "
            "WHERE d.id IS NULL OR d.seq != r.seq OR d.model != ?", (model,)).fetchone()[0])

    def stale_ids(self, model: str, after: str = "", batch: int = 1000) -> list[str]:
        """Ids of resources past ``after`` (by id) whose vectors are missing or stale."""
        return [r[0] for r in self.conn.execute(
            "SELECT r.id FROM resources r LEFT JOIN vector_docs d ON d.id = r.id "
            "WHERE r.id > ? AND (d.id IS NULL OR d.seq != r.seq OR d.model != ?) "
            "ORDER BY r.id LIMIT ?", (after, model, batch))]

    def missing(self, limit: int = 1000) -> tuple[int, list[str]]:
        """(how many, some ids) of resources with no vectors at all (doctor)."""
        n = self.conn.execute(
            "SELECT COUNT(*) FROM resources r WHERE NOT EXISTS "
            "(SELECT 1 FROM vector_docs d WHERE d.id = r.id)").fetchone()[0]
        ids = [r[0] for r in self.conn.execute(
            "SELECT r.id FROM resources r WHERE NOT EXISTS "
            "(SELECT 1 FROM vector_docs d WHERE d.id = r.id) ORDER BY r.id LIMIT ?", (limit,))]
        return int(n), ids

    def orphans(self, limit: int = 1000) -> tuple[int, list[str]]:
        """(how many, some ids) of vectors whose resource is gone (doctor)."""
        n = self.conn.execute(
            "SELECT COUNT(*) FROM vector_docs d WHERE NOT EXISTS "
            "(SELECT 1 FROM resources r WHERE r.id = d.id)").fetchone()[0]
        ids = [r[0] for r in self.conn.execute(
            "SELECT d.id FROM vector_docs d WHERE NOT EXISTS "
            "(SELECT 1 FROM resources r WHERE r.id = d.id) ORDER BY d.id LIMIT ?", (limit,))]
        return int(n), ids

    def counts(self) -> tuple[int, int]:
        """(embedded resources, chunks)."""
        docs = self.conn.execute("SELECT COUNT(*) FROM vector_docs").fetchone()[0]
        chunks = self.conn.execute("SELECT COUNT(*) FROM vector_chunks").fetchone()[0]
        return int(docs), int(chunks)

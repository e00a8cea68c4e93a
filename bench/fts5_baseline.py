"""The search baseline: a SQLite FTS5 index of the same documents, queried in-process.

The documents are the service's own: the catalog's records and the text the service
indexed (``extracts.text`` when ``content_indexed``; ephemeral and binary resources
have metadata only), so both engines see exactly the same fields. Layout:

* ``docs``: one row per resource, ``rowid`` = the service's ``seq`` (newest first), the
  filter fields as plain columns with B-tree indexes on ``(workspace, seq)``,
  ``(workspace, storage_root, seq)`` and ``(workspace, content_major, seq)``, plus the
  text columns.
* ``docs_fts``: FTS5 over the six text fields (external content = ``docs``), the same
  weights as the service (display_name 2, filename 2, path 1, content 1, tags 1.5,
  source_label 1).

Each query shape becomes ``MATCH`` + ``WHERE`` filters, ``ORDER BY bm25`` (text) or
``ORDER BY seq DESC`` (list), ``LIMIT``/``OFFSET``, plus a ``COUNT(*)`` for the total (the
service returns an exact ``meta.total`` too) and, for text shapes, FTS5's ``snippet()``.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

TEXT_COLS = ("display_name", "filename", "path", "content", "tags", "source_label")
WEIGHTS = "2.0, 2.0, 1.0, 1.0, 1.5, 1.0"


class Fts5Baseline:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA cache_size = -262144")     # 256 MiB page cache
        self.conn.execute("PRAGMA mmap_size = 8589934592")
        self.conn.executescript(f"""
            CREATE TABLE IF NOT EXISTS docs (
                seq INTEGER PRIMARY KEY, id TEXT, workspace TEXT, type TEXT, tier TEXT,
                storage_backend TEXT, storage_root TEXT, path_under_root TEXT,
                content_type TEXT, content_major TEXT, expires INTEGER,
                {", ".join(f"{c} TEXT" for c in TEXT_COLS)});
            CREATE INDEX IF NOT EXISTS docs_ws_seq ON docs(workspace, seq);
            CREATE INDEX IF NOT EXISTS docs_ws_root_seq ON docs(workspace, storage_root, seq);
            CREATE INDEX IF NOT EXISTS docs_ws_major_seq ON docs(workspace, content_major, seq);
            CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(
                {", ".join(TEXT_COLS)}, content='docs', content_rowid='seq');
        """)

    def close(self) -> None:
        self.conn.close()

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def load_from_catalog(self, catalog_path: Path) -> dict[str, Any]:
        """Add every catalog record not yet here (incremental: by seq)."""
        t0 = time.perf_counter()
        last = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM docs").fetchone()[0]
        self.conn.execute("ATTACH DATABASE ? AS cat", (str(catalog_path),))
        try:
            self.conn.execute("BEGIN")
            self.conn.execute(f"""
                INSERT INTO docs(seq, id, workspace, type, tier, storage_backend, storage_root,
                                 path_under_root, content_type, content_major, expires,
                                 {", ".join(TEXT_COLS)})
                SELECT r.seq, r.id, r.workspace, r.type, r.tier, r.storage_backend,
                       r.storage_root, r.path_under_root,
                       lower(trim(substr(r.content_type || ';', 1,
                                         instr(r.content_type || ';', ';') - 1))),
                       lower(substr(r.content_type, 1, instr(r.content_type || '/', '/') - 1)),
                       CAST(COALESCE(r.expires_at, 4611686018427387904) AS INTEGER),
                       r.display_name, r.filename, r.path,
                       CASE WHEN r.content_indexed THEN e.text ELSE '' END,
                       (SELECT group_concat(value, ' ') FROM json_each(r.tags)),
                       r.source_label
                FROM cat.resources r LEFT JOIN cat.extracts e ON e.id = r.id
                WHERE r.seq > ? ORDER BY r.seq""", (last,))
            self.conn.execute(f"""
                INSERT INTO docs_fts(rowid, {", ".join(TEXT_COLS)})
                SELECT seq, {", ".join(TEXT_COLS)} FROM docs WHERE seq > ?""", (last,))
            self.conn.execute("COMMIT")
        finally:
            self.conn.execute("DETACH DATABASE cat")
        self.conn.execute("INSERT INTO docs_fts(docs_fts) VALUES('optimize')")
        return {"docs": self.count(), "seconds": time.perf_counter() - t0,
                "bytes": self.path.stat().st_size}

    # -- queries -----------------------------------------------------------------------
    @staticmethod
    def _filters(params: dict[str, Any]) -> tuple[str, list[Any]]:
        where, args = [], []
        if params.get("storage-root"):
            where.append("d.storage_root = ?")
            args.append(params["storage-root"])
        if params.get("path-prefix"):
            p = params["path-prefix"]
            where.append("(d.path_under_root = ? OR substr(d.path_under_root, 1, ?) = ?)")
            args += [p, len(p) + 1, p + "/"]
        if params.get("type"):
            types = params["type"].split(",")
            where.append(f"d.type IN ({','.join('?' * len(types))})")
            args += types
        if params.get("accept"):
            alts = []
            for pattern in params["accept"].split(","):
                major, _, minor = pattern.partition("/")
                if minor == "*":
                    alts.append("d.content_major = ?")
                    args.append(major)
                else:
                    alts.append("d.content_type = ?")
                    args.append(pattern)
            where.append("(" + " OR ".join(alts) + ")")
        return "".join(f" AND {w}" for w in where), args

    def query(self, workspace: str, match: str | None, params: dict[str, Any], now: int,
              limit: int = 20, offset: int = 0) -> tuple[list[str], int]:
        """(ids of the page, total). ``match``: an FTS5 MATCH expression or None (list)."""
        extra, args = self._filters(params)
        if match is None:
            base = f"FROM docs d WHERE d.workspace = ? AND d.expires > ?{extra}"
            rows = self.conn.execute(
                f"SELECT d.id, d.display_name, d.filename, d.path {base} "
                f"ORDER BY d.seq DESC LIMIT ? OFFSET ?",
                [workspace, now, *args, limit, offset]).fetchall()
            total = self.conn.execute(f"SELECT COUNT(*) {base}",
                                      [workspace, now, *args]).fetchone()[0]
            return [r[0] for r in rows], total
        # CROSS JOIN keeps SQLite from driving the join from the docs B-tree (one FTS
        # probe per row); the page is ranked in a subquery so snippet() runs for the
        # 20 returned rows only, not for every match.
        base = (f"FROM docs_fts CROSS JOIN docs d ON d.seq = docs_fts.rowid "
                f"WHERE docs_fts MATCH ? AND d.workspace = ? AND d.expires > ?{extra}")
        rows = self.conn.execute(
            f"SELECT d.id, d.display_name, d.filename, d.path, bm25(docs_fts, {WEIGHTS}) AS s, "
            f"snippet(docs_fts, -1, '<b>', '</b>', '…', 24) "
            f"FROM docs_fts CROSS JOIN docs d ON d.seq = docs_fts.rowid "
            f"WHERE docs_fts MATCH ? AND docs_fts.rowid IN "
            f"(SELECT docs_fts.rowid {base} ORDER BY bm25(docs_fts, {WEIGHTS}) LIMIT ? OFFSET ?) "
            f"ORDER BY s",
            [match, match, workspace, now, *args, limit, offset]).fetchall()
        total = self.conn.execute(f"SELECT COUNT(*) {base}",
                                  [match, workspace, now, *args]).fetchone()[0]
        return [r[0] for r in rows], total

"""How the catalog talks to its database: a unit of work, not a connection.

Repositories write SQL in one portable subset that SQLite (3.35+) and PostgreSQL both
run: ``?`` placeholders, ``INSERT ... ON CONFLICT ... DO UPDATE``, ``RETURNING`` instead
of ``lastrowid``, no ``INSERT OR REPLACE``. Where the two differ the repository asks
``database.dialect``. A ``Database`` hands out:

- ``transaction()``: one write transaction, serialised against every other writer of the
  same catalog (SQLite: ``BEGIN IMMEDIATE``, the file's one write lock; PostgreSQL: a
  transaction-scoped advisory lock). Serialised writers are what make change-log
  positions commit in order, so a follower that read position N has seen all below N.
- ``reader()``: the calling thread's connection for reads. Inside a transaction on the
  same thread it is that transaction, so a read sees what the thread just wrote.

Both return a ``Tx``: anything with ``execute``/``executemany`` returning a DB-API cursor.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import sqlite_utils


class Cursor(Protocol):
    rowcount: int
    description: Any

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A connection inside (or outside) a transaction: the repositories' only handle."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...
    def executemany(self, sql: str, seq: Any) -> Cursor: ...


class Database(Protocol):
    dialect: str                    # "sqlite" | "postgresql"
    location: str                   # what to name in messages (a path, a URL without password)

    def transaction(self) -> contextlib.AbstractContextManager[Tx]: ...
    def reader(self) -> Tx: ...
    def close(self) -> None: ...


def rows_as_dicts(cur: Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def one_as_dict(cur: Cursor) -> dict[str, Any] | None:
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row))


def placeholders(n: int) -> str:
    return ",".join("?" * n)


class SqliteDatabase:
    """One SQLite file in WAL mode; a connection per thread."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _connect(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 60000")
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        # NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only a power
        # loss may lose the last transactions. Blobs are fsynced before their record.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return db

    @property
    def utils(self) -> sqlite_utils.Database:
        """The thread's sqlite-utils handle (migrations create tables through it)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def reader(self) -> sqlite3.Connection:
        return self.utils.conn

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.reader()
        if conn.in_transaction:          # nested use joins the outer transaction
            yield conn
            return
        # Take the write lock up front: writers queue on the busy timeout instead of
        # failing on a lock upgrade halfway through.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def integrity(self, quick: bool = False) -> list[str]:
        """SQLite's own check of every page and index (``quick_check`` skips the
        index-content cross-check); [] when the file is sound."""
        try:
            rows = self.reader().execute("PRAGMA quick_check" if quick
                                         else "PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (tests and backups want one file)."""
        self.reader().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def probe_writable(self, timeout: float = 2.0) -> str | None:
        """Take the write lock and write a row, then roll back, on a connection of its
        own with a short busy timeout, so a readiness probe never waits a minute."""
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO intents(kind, payload, created_at) "
                             "VALUES ('readyz', '{}', 0)")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return f"catalog not writable: {exc}"
        return None

"""The catalog on PostgreSQL (psycopg 3 and a connection pool): what several service
nodes share.

Same unit of work as ``SqliteDatabase`` (see ``database.py``):

- ``transaction()`` borrows a pooled connection, opens a transaction and takes a
  transaction-scoped advisory lock first. Every writer of the catalog takes the same
  lock, so writers are serialised the way SQLite's ``BEGIN IMMEDIATE`` serialises them:
  change-log positions are handed out and committed in order, and a follower that has
  read position N has seen everything below it (PostgreSQL makes a commit visible before
  it releases the transaction's locks).
- ``reader()`` is the thread's open transaction if there is one, else a reader whose
  every statement borrows an autocommit connection for just that statement and returns a
  buffered cursor (the rows are fetched before the connection goes back to the pool).

The repositories' ``?`` placeholders become psycopg's ``%s`` here. A lost connection or
a server that is down is ``Unavailable`` (HTTP 503), never a half-applied write: the
transaction is rolled back by the server when its connection dies, and the pool replaces
broken connections by itself.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool

from ..errors import Unavailable

#: The advisory lock every catalog writer takes (any constant shared by all nodes; these
#: are the bytes of "rsrc" so that an operator reading pg_locks can tell whose it is).
WRITE_LOCK = 0x72737263
#: Held (session-scoped) while migrating, so nodes starting at once migrate one at a time.
MIGRATE_LOCK = WRITE_LOCK + 1
#: Held (session-scoped) by ``commit_lock()`` for the publish+record step of a persist.
COMMIT_LOCK = WRITE_LOCK + 2

#: The channel on which a commit that appended to the change log wakes the followers.
CHANNEL = "resources_changes"

#: Errors that mean "the database is not reachable right now", not "this SQL is wrong".
_DOWN = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.InterfaceError)


def redact(url: str) -> str:
    """The URL without its password: what messages and /readyz may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """``?`` placeholders to ``%s``; a literal ``%`` (``LIKE 'x:%'``) is doubled first so
    psycopg does not read it as a placeholder. The repositories never put ``?`` inside a
    string literal (their literals are fixed words)."""
    return sql.replace("%", "%%").replace("?", "%s")


class BufferedCursor:
    """The rows of one statement, fetched while its connection was still borrowed."""

    def __init__(self, cur: psycopg.Cursor) -> None:
        self.description = ([(c.name, None, None, None, None, None, None)
                             for c in cur.description] if cur.description else None)
        self._rows = cur.fetchall() if cur.description else []
        self.rowcount = cur.rowcount
        self._next = 0

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _run(conn: psycopg.Connection, sql: str, params: Sequence[Any] | None) -> BufferedCursor:
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)               # no placeholders: sent as written
        else:
            cur.execute(translate(sql), params)
        return BufferedCursor(cur)


class PgTx:
    """A connection inside a transaction: what ``transaction()`` yields."""

    def __init__(self, database: "PostgresDatabase", conn: psycopg.Connection) -> None:
        self._database = database
        self.conn = conn
        #: Set when the change log grew in this transaction: followers are woken at commit.
        self.changed = False

    def note_change(self) -> None:
        self.changed = True

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> BufferedCursor:
        with self._database.translated_errors():
            return _run(self.conn, sql, params)

    def executemany(self, sql: str, seq: Any) -> BufferedCursor:
        with self._database.translated_errors(), self.conn.cursor() as cur:
            cur.executemany(translate(sql), list(seq))
            return BufferedCursor(cur)


class PgReader:
    """Reads outside a transaction: each statement on a pooled autocommit connection."""

    def __init__(self, database: "PostgresDatabase") -> None:
        self._database = database

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> BufferedCursor:
        with self._database.connection() as conn:
            try:
                return _run(conn, sql, params)
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                self._database.purge()
        # A connection that broke since its last use (the server restarted): a read is
        # safe to repeat, once, on a fresh one.
        with self._database.connection() as conn:
            return _run(conn, sql, params)

    def executemany(self, sql: str, seq: Any) -> BufferedCursor:
        with self._database.transaction() as tx:      # a write: serialise it like one
            return tx.executemany(sql, seq)


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8,
                 timeout: float = 5.0) -> None:
        self.url = url
        self.location = redact(url)
        self.timeout = timeout
        self._local = threading.local()
        self._reader = PgReader(self)
        # Connections are autocommit: a transaction is an explicit BEGIN/COMMIT, so a
        # borrowed connection never carries an implicit open transaction back to the pool.
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
            kwargs={"autocommit": True, "connect_timeout": max(int(timeout), 2)},
            # No check per borrow (it would double every read's round trips): a
            # connection found broken is retried once and the idle ones purged (purge()).
            # While the server is down, keep trying to reconnect in the background; each
            # request meanwhile waits at most ``timeout`` and then answers 503.
            reconnect_timeout=3600, name="catalog")
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise Unavailable(f"the catalog database {self.location} is not reachable "
                              f"(no connection within {timeout:g} s)") from None

    # -- errors --------------------------------------------------------------------------
    @contextlib.contextmanager
    def translated_errors(self) -> Iterator[None]:
        try:
            yield
        except _DOWN as exc:
            raise Unavailable(f"the catalog database {self.location} is unavailable "
                              f"({str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}); "
                              f"nothing was written, retry later") from exc

    @contextlib.contextmanager
    def connection(self, first: str | None = None) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection for a moment. ``first``: a statement to run at
        once; when it finds the connection broken since its last use (a server restart),
        the stale connections are dropped and one fresh connection is tried."""
        with self.translated_errors():
            for attempt in (0, 1):
                with self._pool.connection() as conn:
                    if first is not None:
                        try:
                            conn.execute(first)
                        except psycopg.OperationalError:
                            if attempt or not conn.broken:
                                raise
                            self.purge()
                            continue
                    yield conn
                    return

    def purge(self) -> None:
        """Drop idle connections that died with the server (the pool replaces them):
        found by the first request after a restart instead of one request each."""
        with contextlib.suppress(*_DOWN):
            self._pool.check()

    # -- the unit of work ----------------------------------------------------------------
    def reader(self) -> PgTx | PgReader:
        tx = getattr(self._local, "tx", None)
        return tx if tx is not None else self._reader

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgTx]:
        outer = getattr(self._local, "tx", None)
        if outer is not None:               # nested use joins the outer transaction
            yield outer
            return
        with self.connection(first="BEGIN") as conn:
            tx = PgTx(self, conn)
            self._local.tx = tx
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield tx
            except BaseException:
                self._local.tx = None
                with contextlib.suppress(*_DOWN):
                    conn.execute("ROLLBACK")
                raise
            self._local.tx = None
            if tx.changed:
                # Delivered only if and when the transaction commits; one per transaction
                # however many changes it appended.
                conn.execute(f"NOTIFY {CHANNEL}")
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def session_lock(self, key: int) -> Iterator[None]:
        """A session advisory lock held on a connection of its own for the block: across
        every node; released by the server if this process dies."""
        with self.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                with contextlib.suppress(*_DOWN):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def try_session_lock(self, key: int) -> contextlib.AbstractContextManager[bool]:
        """Like ``session_lock`` but never waits: yields whether this node got it."""
        @contextlib.contextmanager
        def held() -> Iterator[bool]:
            with self.connection() as conn:
                got = bool(conn.execute("SELECT pg_try_advisory_lock(%s)",
                                        (key,)).fetchone()[0])
                try:
                    yield got
                finally:
                    if got:
                        with contextlib.suppress(*_DOWN):
                            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return held()

    def commit_lock(self) -> "SessionLock":
        """The lock of the publish+record step of a persist, across every node (where a
        SQLite home uses a host-local flock)."""
        return SessionLock(self, COMMIT_LOCK)

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` whenever another connection commits changes to the log (LISTEN
        on a dedicated connection, in a thread); returns the function that stops it. A
        lost connection is re-established every second; meanwhile, and for anything a
        notification could miss, the follower's poll is the fallback."""
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=max(int(self.timeout), 2)) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        wake()          # (re)connected: whatever was missed meanwhile
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                wake()
                except psycopg.Error:
                    stop.wait(1.0)

        thread = threading.Thread(target=run, name="catalog-listen", daemon=True)
        thread.start()

        def stop_listening() -> None:
            stop.set()
            thread.join(5)
        return stop_listening

    def close(self) -> None:
        self._pool.close()

    # -- health --------------------------------------------------------------------------
    def integrity(self, quick: bool = False) -> list[str]:
        """PostgreSQL checks its own pages (and WAL replay repairs a crash); what can be
        wrong from here is a schema this code does not know."""
        try:
            row = self.reader().execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except (psycopg.Error, Unavailable) as exc:
            return [str(exc)]
        return [] if row else ["the catalog database has no schema_version row"]

    def checkpoint(self) -> None:
        """Nothing to fold: the server owns its WAL."""

    def probe_writable(self, timeout: float = 2.0) -> str | None:
        """Take the write lock and write a row, then roll back, on a connection of its
        own with a short lock timeout, so a readiness probe never waits long."""
        try:
            with psycopg.connect(self.url, autocommit=True,
                                 connect_timeout=max(int(timeout), 1)) as conn:
                conn.execute("BEGIN")
                conn.execute(f"SET LOCAL lock_timeout = {int(timeout * 1000)}")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                conn.execute("INSERT INTO intents(kind, payload, created_at) "
                             "VALUES ('readyz', '{}', 0)")
                conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            return f"catalog not writable: {str(exc).strip() or type(exc).__name__}"
        return None


class SessionLock:
    """A session advisory lock held for the duration of ``held()``, re-entrant within
    this process (like ``storage.lifecycle.CommitLock``, whose interface it has).

    The lock lives on one dedicated connection, kept open between uses: a connect per
    persist would cost more than the persist's own transaction. If the connection broke
    (server restart), the lock went with it; the next use reconnects. If this process
    dies, the server drops its session and the lock with it, so no node waits forever.
    """

    def __init__(self, database: PostgresDatabase, key: int) -> None:
        self.database = database
        self.key = key
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database.url, autocommit=True,
                                         connect_timeout=max(int(self.database.timeout), 2))
        return self._conn

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                with self.database.translated_errors():
                    try:
                        self._connection().execute("SELECT pg_advisory_lock(%s)", (self.key,))
                    except _DOWN:
                        # A connection broken since its last use: one fresh try.
                        self._conn = None
                        self._connection().execute("SELECT pg_advisory_lock(%s)", (self.key,))
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._conn is not None:
                    try:
                        self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                    except _DOWN:
                        self._conn = None       # the session, and so the lock, is gone

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

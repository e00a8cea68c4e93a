"""The catalog: one SQLite file (WAL) through sqlite-utils, schema versioned by migrations.

Tables: resources (every record field), extracts (the bounded text, so a reindex never
re-reads blobs), slots, idempotency keys, API keys, the KV store, ``intents`` (durable
half-done operations, finished or rolled back at the next start), ``changes`` (the change
log: one row per change to a resource, with a monotonically increasing position, written
in the same transaction as the change), ``followers`` (each index's applied position, so
the log is pruned only behind every one of them) and ``counters`` (the write sequence).

Connections are per thread. Multi-statement writes run inside ``transaction()``, which
takes SQLite's write lock up front (BEGIN IMMEDIATE): writers queue on the busy timeout
instead of failing on a lock upgrade.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from .errors import CatalogDamaged
from .records import Resource, Slot

SCHEMA_VERSION = 8


def _m1(db: sqlite_utils.Database) -> None:
    db["resources"].create({
        "id": str, "uri": str, "workspace": str, "type": str, "tier": str,
        "display_name": str, "filename": str, "content_type": str, "size": int,
        "sha256": str, "storage_backend": str, "connection": str, "storage_root": str,
        "path_under_root": str, "path": str, "slot": str, "flow": str, "step": str,
        "workflow_id": str, "tags": str, "source_label": str, "created_at": float,
        "updated_at": float, "expires_at": float, "version": int, "content_indexed": int,
        "content_truncated": int, "seq": int, "extraction": str, "search_index": str,
    }, pk="id", not_null={"uri", "workspace", "type", "tier", "path", "seq"})
    db["resources"].create_index(["uri"], unique=True)
    # One resource per blob location: a slot rewrite finds its record by this key.
    db["resources"].create_index(["connection", "path"], unique=True)
    db["resources"].create_index(["workspace", "seq"])
    db["resources"].create_index(["workspace", "workflow_id", "step"])
    db["resources"].create_index(["expires_at"])
    db["resources"].create_index(["seq"], unique=True)
    db["extracts"].create({"id": str, "text": str}, pk="id")
    db["slots"].create({"workspace": str, "name": str, "connection": str, "root": str,
                        "created_at": float, "updated_at": float}, pk=("workspace", "name"))
    db["idempotency"].create({"workspace": str, "key": str, "request_hash": str,
                              "resource_id": str, "created_at": float},
                             pk=("workspace", "key"))
    db["api_keys"].create({"id": str, "workspace": str, "hash": str, "scopes": str,
                           "name": str, "created_at": float}, pk="id")
    db["intents"].create({"id": int, "kind": str, "payload": str, "created_at": float}, pk="id")
    db["index_outbox"].create({"id": int, "resource_id": str}, pk="id")


def _m2(db: sqlite_utils.Database) -> None:
    db["kv"].create({"workspace": str, "key": str, "value": str, "version": int,
                     "created_at": float, "updated_at": float, "expires_at": float,
                     "seq": int}, pk=("workspace", "key"))
    db["kv"].create_index(["workspace", "seq"])
    db["kv"].create_index(["expires_at"])


def _m3(db: sqlite_utils.Database) -> None:
    # Upload sessions of the Breyta face (init -> PUT bytes -> complete); rows expire.
    db["upload_sessions"].create({
        "id": str, "workspace": str, "resource_id": str, "uri": str, "key": str,
        "staging_key": str, "filename": str, "content_type": str, "replace": int,
        "state": str, "size": int, "created_at": float, "expires_at": float,
    }, pk="id", not_null={"workspace", "uri", "key", "staging_key", "state"})
    db["upload_sessions"].create_index(["workspace", "uri"])
    db["upload_sessions"].create_index(["expires_at"])


def _m4(db: sqlite_utils.Database) -> None:
    # Outbox and intent ids must never be reused: a sync acknowledges the rows it read
    # by id, and a reused id would acknowledge a newer row it never applied (another
    # process's write would then be missing from the index). AUTOINCREMENT guarantees
    # monotonic, never-reused ids.
    for table, cols in (("index_outbox", "resource_id TEXT"),
                        ("intents", "kind TEXT, payload TEXT, created_at FLOAT")):
        names = ", ".join(c.split()[0] for c in cols.split(", "))
        db.execute(f"CREATE TABLE {table}_new (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
        db.execute(f"INSERT INTO {table}_new (id, {names}) SELECT id, {names} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


def _m5(db: sqlite_utils.Database) -> None:
    # The outbox (rows deleted once applied: one consumer only) becomes a change log that
    # any number of indexes follow by position. Rows still in the outbox are exactly what
    # the existing index has not applied; they keep their ids as positions.
    db.execute("CREATE TABLE changes (pos INTEGER PRIMARY KEY AUTOINCREMENT, "
               "resource_id TEXT NOT NULL, at FLOAT NOT NULL)")
    if db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'index_outbox'").fetchone():
        # An index may exist that knows nothing of positions: its first open derives one.
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('legacy_outbox', '1')")
    db.execute("INSERT INTO changes(pos, resource_id, at) SELECT id, resource_id, "
               "CAST(strftime('%s','now') AS FLOAT) FROM index_outbox ORDER BY id")
    db.execute("DROP TABLE index_outbox")
    db.execute("CREATE TABLE followers (name TEXT PRIMARY KEY, position INTEGER NOT NULL, "
               "updated_at FLOAT NOT NULL)")
    # seq from a counter row: MAX(seq)+1 over two tables cost 41 ms at 300k kv rows,
    # inside the commit lock.
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO counters VALUES ('seq', MAX("
               "(SELECT COALESCE(MAX(seq), 0) FROM resources), "
               "(SELECT COALESCE(MAX(seq), 0) FROM kv)))")
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('changes_pruned_through', '0')")


def _m6(db: sqlite_utils.Database) -> None:
    # Web sessions are signed cookies; a sign-out records the session id here so the
    # cookie stops working at once instead of living out its 12 hours.
    db["ended_sessions"].create({"id": str, "expires_at": float}, pk="id")


def _m7(db: sqlite_utils.Database) -> None:
    # The origins allowed to embed a workspace's picker (issue 21): one row per origin,
    # so an allow-list change is a plain replace inside one transaction.
    db["picker_origins"].create({"workspace": str, "origin": str, "created_at": float},
                                pk=("workspace", "origin"))


def _m8(db: sqlite_utils.Database) -> None:
    # Embedding vectors of semantic search (issue 19): its SQL lives in vectors_store.
    from . import vectors_store
    vectors_store.migrate(db)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2, _m3, _m4, _m5, _m6, _m7,
                                                             _m8]
assert len(MIGRATIONS) == SCHEMA_VERSION


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            # A truncated, zeroed or overwritten file: say what and what to do, instead
            # of a traceback from deep inside the driver at every start.
            self.close()
            raise CatalogDamaged(
                f"the catalog {path} is damaged ({exc}); the service cannot start on it. "
                f"Stop every process on this data home, move the file aside and restore "
                f"it from a backup (see docs/recovery.md)") from None

    # -- connections -------------------------------------------------------------------
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
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        if conn.in_transaction:          # nested use joins the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"catalog schema {current} is newer than this code ({SCHEMA_VERSION})")
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self.db)
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
                              (str(SCHEMA_VERSION),))

    def integrity(self, quick: bool = False) -> list[str]:
        """SQLite's own check of every page and index (``quick_check`` skips the
        index-content cross-check); [] when the file is sound."""
        try:
            rows = self.conn.execute("PRAGMA quick_check" if quick
                                     else "PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    # -- resources ---------------------------------------------------------------------
    def next_seq(self, conn: sqlite3.Connection) -> int:
        """The next write sequence (resources and kv share it). Call inside a transaction:
        the counter row is bumped under SQLite's write lock, so values never repeat."""
        return int(conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq' "
                                "RETURNING value").fetchone()[0])

    def get(self, id_: str, conn: sqlite3.Connection | None = None) -> Resource | None:
        return self._one(conn or self.conn, "SELECT * FROM resources WHERE id = ?", (id_,))

    def get_many(self, ids: list[str]) -> dict[str, Resource]:
        out: dict[str, Resource] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT * FROM resources WHERE id IN ({','.join('?' * len(chunk))})"
            for row in self.db.query(q, chunk):
                out[row["id"]] = Resource.from_row(row)
        return out

    def by_location(self, conn: sqlite3.Connection, connection: str, path: str) -> Resource | None:
        return self._one(conn, "SELECT * FROM resources WHERE connection = ? AND path = ?",
                         (connection, path))

    @staticmethod
    def _one(conn: sqlite3.Connection, sql: str, params: tuple) -> Resource | None:
        cur = conn.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return Resource.from_row(dict(zip([d[0] for d in cur.description], row)))

    def upsert(self, conn: sqlite3.Connection, res: Resource, text: str | None) -> None:
        row = res.to_row()
        cols = list(row)
        conn.execute(
            f"INSERT OR REPLACE INTO resources ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
            [row[c] for c in cols])
        conn.execute("INSERT OR REPLACE INTO extracts(id, text) VALUES (?, ?)", (res.id, text or ""))
        self.enqueue_index(conn, res.id)

    def delete(self, conn: sqlite3.Connection, id_: str) -> None:
        conn.execute("DELETE FROM resources WHERE id = ?", (id_,))
        conn.execute("DELETE FROM extracts WHERE id = ?", (id_,))
        self.enqueue_index(conn, id_)

    def extract_text(self, id_: str) -> str:
        row = self.conn.execute("SELECT text FROM extracts WHERE id = ?", (id_,)).fetchone()
        return row[0] if row else ""

    def extract_texts(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT id, text FROM extracts WHERE id IN ({','.join('?' * len(chunk))})"
            out.update({r[0]: r[1] for r in self.conn.execute(q, chunk)})
        return out

    def iter_resources(self, where: str = "1=1", params: tuple = (), batch: int = 1000) -> Iterator[Resource]:
        last = ""
        while True:
            rows = list(self.db.query(
                f"SELECT * FROM resources WHERE ({where}) AND id > ? ORDER BY id LIMIT {batch}",
                (*params, last)))
            if not rows:
                return
            for row in rows:
                yield Resource.from_row(row)
            last = rows[-1]["id"]

    def count(self, where: str = "1=1", params: tuple = ()) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM resources WHERE {where}", params).fetchone()[0]

    # -- change log ----------------------------------------------------------------------
    def enqueue_index(self, conn: sqlite3.Connection, id_: str) -> int:
        """Append a change of resource ``id_`` to the log, inside the caller's transaction;
        returns its position. Positions are handed out under SQLite's single write lock, so
        they commit in order: a reader that sees position N sees every position below."""
        pos = int(conn.execute("INSERT INTO changes(resource_id, at) VALUES (?, ?)",
                               (id_, time.time())).lastrowid)
        self._local.last_position = pos
        return pos

    def last_position(self) -> int:
        """The position of the latest change this thread wrote (0: none)."""
        return getattr(self._local, "last_position", 0)

    def note_position(self, position: int) -> None:
        """Make ``position`` this thread's latest change (written by a group-commit
        leader on this thread's behalf)."""
        self._local.last_position = position

    def head(self) -> int:
        """The highest position ever handed out (AUTOINCREMENT's high-water mark)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0

    def changes_after(self, position: int, limit: int = 5000) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT pos, resource_id FROM changes WHERE pos > ? ORDER BY pos LIMIT ?",
            (position, limit))]

    def first_change_time(self, after: int) -> float | None:
        """When the oldest change past ``after`` was written (for lag in seconds)."""
        row = self.conn.execute("SELECT at FROM changes WHERE pos > ? ORDER BY pos LIMIT 1",
                                (after,)).fetchone()
        return float(row[0]) if row else None

    def oldest_position(self) -> int | None:
        row = self.conn.execute("SELECT MIN(pos) FROM changes").fetchone()
        return row[0]

    def set_follower(self, name: str, position: int) -> None:
        """Record that index ``name`` applied the log through ``position``. A follower's
        position only moves forward (a rebuilt index gets a new name)."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO followers VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                         "SET position = MAX(position, excluded.position), "
                         "updated_at = excluded.updated_at", (name, position, time.time()))

    def take_legacy_outbox_flag(self) -> bool:
        """True once after the migration from the outbox, if the catalog had writes."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM meta WHERE key = 'legacy_outbox'").rowcount > 0

    def drop_follower(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM followers WHERE name = ?", (name,))

    def followers(self) -> dict[str, tuple[int, float]]:
        return {r[0]: (int(r[1]), float(r[2])) for r in
                self.conn.execute("SELECT name, position, updated_at FROM followers")}

    def pruned_through(self) -> int:
        row = self.conn.execute(
            "SELECT value FROM meta WHERE key = 'changes_pruned_through'").fetchone()
        return int(row[0]) if row else 0

    def prune_changes(self, stale_after: float = 7 * 86_400) -> int:
        """Drop log rows every live follower has applied; returns how many. A follower
        not heard from in ``stale_after`` seconds no longer holds the log back: if it
        comes back behind the pruned end, it rebuilds (see ``indexer.index``)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT MIN(position) FROM followers WHERE updated_at > ?",
                               (time.time() - stale_after,)).fetchone()
            if row[0] is None:
                return 0
            horizon = int(row[0])
            gone = conn.execute("DELETE FROM changes WHERE pos <= ?", (horizon,)).rowcount
            if horizon > self.pruned_through():
                conn.execute("INSERT OR REPLACE INTO meta(key, value) "
                             "VALUES ('changes_pruned_through', ?)", (str(horizon),))
            return int(gone)

    def outbox_size(self) -> int:
        """Changes the slowest registered index has not applied yet (the backlog)."""
        row = self.conn.execute("SELECT MIN(position) FROM followers").fetchone()
        behind = row[0] if row[0] is not None else 0
        return max(self.head() - int(behind), 0)

    # -- intents -----------------------------------------------------------------------
    def add_intent(self, kind: str, payload: dict, now: float) -> int:
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO intents(kind, payload, created_at) VALUES (?,?,?)",
                               (kind, json.dumps(payload), now))
            return int(cur.lastrowid)

    def drop_intent(self, conn: sqlite3.Connection, intent_id: int) -> None:
        conn.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def intents(self) -> list[tuple[int, str, dict]]:
        """Intents still to finish (quarantined ones are an operator's to look at)."""
        out = []
        for r in self.conn.execute("SELECT id, kind, payload FROM intents "
                                   "WHERE kind NOT LIKE 'quarantined:%' ORDER BY id"):
            try:
                payload = json.loads(r[2])
            except (TypeError, ValueError):
                payload = {"_damaged": str(r[2])[:200]}
            out.append((r[0], r[1], payload if isinstance(payload, dict) else {}))
        return out

    def quarantine_intent(self, intent_id: int, kind: str, payload: dict, error: str,
                          now: float) -> None:
        """Keep the intent, renamed out of recovery's way, with why it was set aside."""
        with self.transaction() as conn:
            conn.execute("UPDATE intents SET kind = ?, payload = ? WHERE id = ?",
                         (f"quarantined:{kind}",
                          json.dumps({**payload, "_error": error, "_at": now}), intent_id))

    def quarantined_intents(self) -> list[tuple[int, str, dict]]:
        return [(r[0], r[1].split(":", 1)[1], json.loads(r[2])) for r in self.conn.execute(
            "SELECT id, kind, payload FROM intents WHERE kind LIKE 'quarantined:%' ORDER BY id")]

    # -- slots -------------------------------------------------------------------------
    def put_slot(self, slot: Slot) -> Slot:
        with self.transaction() as conn:
            old = conn.execute("SELECT created_at FROM slots WHERE workspace=? AND name=?",
                               (slot.workspace, slot.name)).fetchone()
            if old:
                slot.created_at = old[0]
            conn.execute("INSERT OR REPLACE INTO slots VALUES (?,?,?,?,?,?)",
                         (slot.workspace, slot.name, slot.connection, slot.root,
                          slot.created_at, slot.updated_at))
        return slot

    def get_slot(self, workspace: str, name: str) -> Slot | None:
        row = self.conn.execute("SELECT * FROM slots WHERE workspace=? AND name=?",
                                (workspace, name)).fetchone()
        return Slot(*row) if row else None

    def list_slots(self, workspace: str | None = None) -> list[Slot]:
        if workspace is None:
            rows = self.conn.execute("SELECT * FROM slots ORDER BY workspace, name")
        else:
            rows = self.conn.execute("SELECT * FROM slots WHERE workspace=? ORDER BY name", (workspace,))
        return [Slot(*r) for r in rows]

    # -- picker origins ------------------------------------------------------------------
    def picker_origins(self, workspace: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT origin FROM picker_origins WHERE workspace = ? ORDER BY origin",
            (workspace,))]

    def set_picker_origins(self, workspace: str, origins: list[str], now: float) -> list[str]:
        """Replace the workspace's allow-list (kept creation times of origins that stay)."""
        with self.transaction() as conn:
            old = dict(conn.execute("SELECT origin, created_at FROM picker_origins "
                                    "WHERE workspace = ?", (workspace,)).fetchall())
            conn.execute("DELETE FROM picker_origins WHERE workspace = ?", (workspace,))
            for origin in origins:
                conn.execute("INSERT INTO picker_origins VALUES (?,?,?)",
                             (workspace, origin, old.get(origin, now)))
        return self.picker_origins(workspace)

    # -- idempotency -------------------------------------------------------------------
    def idempotency(self, conn: sqlite3.Connection, workspace: str, key: str) -> tuple[str, str] | None:
        row = conn.execute("SELECT request_hash, resource_id FROM idempotency WHERE workspace=? AND key=?",
                           (workspace, key)).fetchone()
        return (row[0], row[1]) if row else None

    def put_idempotency(self, conn: sqlite3.Connection, workspace: str, key: str,
                        request_hash: str, resource_id: str, now: float) -> None:
        conn.execute("INSERT INTO idempotency VALUES (?,?,?,?,?)",
                     (workspace, key, request_hash, resource_id, now))

"""The SQLite catalog's schema, one migration per version (never edit a shipped one).

Tables: resources (every record field), extracts (the bounded text, so a reindex never
re-reads blobs), slots, idempotency keys, API keys, the KV store, ``intents`` (durable
half-done operations, finished or rolled back at the next start), ``changes`` (the change
log: one row per change to a resource, with a monotonically increasing position, written
in the same transaction as the change), ``followers`` (each index's applied position, so
the log is pruned only behind every one of them), ``counters`` (the write sequence) and
``nodes`` (service nodes' heartbeats).
"""
from __future__ import annotations

import sqlite3
from typing import Callable

import sqlite_utils

from ..errors import CatalogDamaged
from .database import SqliteDatabase

SCHEMA_VERSION = 9


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
    # Service nodes sharing the catalog (docs/scale-out.md): each writes a heartbeat row
    # naming its index follower, so /cluster lists them and wait-for=all knows whom to
    # wait for. A one-machine home has one row.
    db.execute("CREATE TABLE nodes (name TEXT PRIMARY KEY, url TEXT, follower TEXT, "
               "started_at FLOAT NOT NULL, heartbeat_at FLOAT NOT NULL)")


def _m9(db: sqlite_utils.Database) -> None:
    # Embedding vectors of semantic search (issue 19): tables defined beside their SQL.
    from .vectors import migrate as vectors
    vectors(db)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2, _m3, _m4, _m5, _m6, _m7,
                                                             _m8, _m9]
assert len(MIGRATIONS) == SCHEMA_VERSION


def migrate(database: SqliteDatabase) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction; a damaged file is one clear
    CatalogDamaged instead of a traceback from deep inside the driver at every start."""
    try:
        with database.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"catalog schema {current} is newer than this code "
                                   f"({SCHEMA_VERSION})")
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](database.utils)
            conn.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (str(SCHEMA_VERSION),))
    except sqlite3.DatabaseError as exc:
        database.close()
        raise CatalogDamaged(
            f"the catalog {database.path} is damaged ({exc}); the service cannot start on "
            f"it. Stop every process on this data home, move the file aside and restore "
            f"it from a backup (see docs/recovery.md)") from None

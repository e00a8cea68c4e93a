"""The catalog: records, the change log and every other durable row, behind repositories.

``Catalog`` composes one small repository per aggregate over one ``Database`` (the unit
of work, see ``database.py``). Every SQL statement of the service lives in this package
(tests/architecture checks it); callers use named queries and pass the ``Tx`` that
``transaction()`` yields through without looking inside it.

Adding a catalog implementation is one module with a ``Database`` and its schema, plus
one line in ``open_database`` and one fixture line in tests/storage/test_catalog_contract.py.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from .changes import ChangeLog
from .database import Database, SqliteDatabase, Tx
from .intents import Intents
from .keys import Keys
from .kv import KvRow, KvRows
from .nodes import NodeRow, Nodes
from .record_cache import RecordCache
from .resources import Resources
from .slots import Idempotency, PickerOrigins, Slots
from .sqlite_schema import SCHEMA_VERSION, migrate
from .uploads import UploadSessions
from .vectors import VectorStore

__all__ = ["Catalog", "Database", "KvRow", "NodeRow", "SCHEMA_VERSION", "Tx", "is_url", "open_database"]


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_database(location: str | Path) -> Database:
    """The database behind a catalog location, migrated to this code's schema: a file
    path is SQLite (the one-machine default); a ``postgresql://`` URL is a PostgreSQL
    database several nodes share (imported only then: SQLite homes never load psycopg)."""
    if is_url(location):
        from . import postgres_schema
        from .postgres import PostgresDatabase
        pg = PostgresDatabase(str(location))
        try:
            postgres_schema.migrate(pg)
        except BaseException:
            pg.close()
            raise
        return pg
    database = SqliteDatabase(Path(location))
    migrate(database)
    return database


class Catalog:
    def __init__(self, location: str | Path | Database) -> None:
        self.database: Database = location if not isinstance(location, (str, Path)) \
            else open_database(location)
        self.changes = ChangeLog(self.database)
        self.resources = Resources(self.database, self.changes.append)
        #: Search pages' records, re-read only where their seq moved (record_cache.py).
        self.records = RecordCache(self.resources)
        self.intents = Intents(self.database)
        self.slots = Slots(self.database)
        self.picker_origins = PickerOrigins(self.database)
        self.idempotency = Idempotency(self.database)
        self.keys = Keys(self.database)
        self.kv = KvRows(self.database)
        self.uploads = UploadSessions(self.database)
        self.vectors = VectorStore(self.database)
        self.nodes = Nodes(self.database)

    @property
    def shared(self) -> bool:
        """Whether other service nodes may share this catalog (PostgreSQL)."""
        return self.database.dialect != "sqlite"

    @property
    def location(self) -> str:
        return self.database.location

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.database.transaction() as tx:
            yield tx

    def close(self) -> None:
        self.database.close()

    def ping(self) -> None:
        """A round trip to the database (raises when it is unreachable)."""
        self.database.reader().execute("SELECT 1").fetchone()

    def probe_writable(self, timeout: float = 2.0) -> str | None:
        """Take the write lock and write a row, then roll back, on a connection of its
        own with a short wait; None when writable, else why not."""
        return self.database.probe_writable(timeout)  # type: ignore[attr-defined]

    def integrity(self, quick: bool = False) -> list[str]:
        """The database's own consistency check; [] when sound."""
        return self.database.integrity(quick)  # type: ignore[attr-defined]

    def schema_version(self) -> int:
        return int(self.database.reader().execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

"""Installer-owned slots (a name bound to a connection and root), the origins allowed to
embed a workspace's picker, and idempotency keys of persists."""
from __future__ import annotations

from ..records import Slot
from .database import Database, Tx


class Slots:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, slot: Slot) -> Slot:
        """Create or rebind; a rebind keeps the slot's creation time."""
        with self.database.transaction() as tx:
            old = tx.execute("SELECT created_at FROM slots WHERE workspace = ? AND name = ?",
                             (slot.workspace, slot.name)).fetchone()
            if old:
                slot.created_at = old[0]
            tx.execute("INSERT INTO slots(workspace, name, connection, root, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(workspace, name) "
                       "DO UPDATE SET connection = excluded.connection, root = excluded.root, "
                       "updated_at = excluded.updated_at",
                       (slot.workspace, slot.name, slot.connection, slot.root,
                        slot.created_at, slot.updated_at))
        return slot

    def get(self, workspace: str, name: str) -> Slot | None:
        row = self.database.reader().execute(
            "SELECT workspace, name, connection, root, created_at, updated_at FROM slots "
            "WHERE workspace = ? AND name = ?", (workspace, name)).fetchone()
        return Slot(*row) if row else None

    def list(self, workspace: str | None = None) -> list[Slot]:
        cols = "workspace, name, connection, root, created_at, updated_at"
        if workspace is None:
            rows = self.database.reader().execute(
                f"SELECT {cols} FROM slots ORDER BY workspace, name")
        else:
            rows = self.database.reader().execute(
                f"SELECT {cols} FROM slots WHERE workspace = ? ORDER BY name", (workspace,))
        return [Slot(*r) for r in rows]


class PickerOrigins:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, workspace: str) -> list[str]:
        return [r[0] for r in self.database.reader().execute(
            "SELECT origin FROM picker_origins WHERE workspace = ? ORDER BY origin",
            (workspace,))]

    def replace(self, workspace: str, origins: list[str], now: float) -> list[str]:
        """Replace the workspace's allow-list (kept creation times of origins that stay)."""
        with self.database.transaction() as tx:
            old = {r[0]: r[1] for r in tx.execute(
                "SELECT origin, created_at FROM picker_origins WHERE workspace = ?",
                (workspace,)).fetchall()}
            tx.execute("DELETE FROM picker_origins WHERE workspace = ?", (workspace,))
            for origin in origins:
                tx.execute("INSERT INTO picker_origins(workspace, origin, created_at) "
                           "VALUES (?, ?, ?)", (workspace, origin, old.get(origin, now)))
        return self.get(workspace)


class Idempotency:
    """Which request (by hash) first used an Idempotency-Key, and the resource it made."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, workspace: str, key: str, tx: Tx | None = None) -> tuple[str, str] | None:
        row = (tx or self.database.reader()).execute(
            "SELECT request_hash, resource_id FROM idempotency WHERE workspace = ? AND key = ?",
            (workspace, key)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, tx: Tx, workspace: str, key: str, request_hash: str, resource_id: str,
            now: float) -> None:
        """Record (or re-point) the key: a rolled-forward persist may meet its own row."""
        tx.execute("INSERT INTO idempotency(workspace, key, request_hash, resource_id, "
                   "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(workspace, key) DO UPDATE "
                   "SET request_hash = excluded.request_hash, "
                   "resource_id = excluded.resource_id, created_at = excluded.created_at",
                   (workspace, key, request_hash, resource_id, now))

"""Durable intents: half-done operations that the next start finishes or rolls back.

A quarantined intent (one recovery could not finish) keeps its row, renamed
``quarantined:<kind>``, with why it was set aside: an operator's to look at.
"""
from __future__ import annotations

import json
from typing import Any

from .database import Database, Tx


class Intents:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, tx: Tx, kind: str, payload: dict[str, Any], now: float) -> int:
        return int(tx.execute(
            "INSERT INTO intents(kind, payload, created_at) VALUES (?, ?, ?) RETURNING id",
            (kind, json.dumps(payload), now)).fetchone()[0])

    def add_now(self, kind: str, payload: dict[str, Any], now: float) -> int:
        """``add`` in a transaction of its own."""
        with self.database.transaction() as tx:
            return self.add(tx, kind, payload, now)

    def drop(self, tx: Tx, intent_id: int) -> None:
        tx.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def pending(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Intents still to finish, oldest first (quarantined ones are left out)."""
        out = []
        for r in self.database.reader().execute(
                "SELECT id, kind, payload FROM intents WHERE kind NOT LIKE 'quarantined:%' "
                "ORDER BY id"):
            try:
                payload = json.loads(r[2])
            except (TypeError, ValueError):
                payload = {"_damaged": str(r[2])[:200]}
            out.append((int(r[0]), r[1], payload if isinstance(payload, dict) else {}))
        return out

    def quarantine(self, intent_id: int, kind: str, payload: dict[str, Any], error: str,
                   now: float) -> None:
        """Keep the intent, renamed out of recovery's way, with why it was set aside."""
        with self.database.transaction() as tx:
            tx.execute("UPDATE intents SET kind = ?, payload = ? WHERE id = ?",
                       (f"quarantined:{kind}",
                        json.dumps({**payload, "_error": error, "_at": now}), intent_id))

    def quarantined(self) -> list[tuple[int, str, dict[str, Any]]]:
        return [(int(r[0]), r[1].split(":", 1)[1], json.loads(r[2]))
                for r in self.database.reader().execute(
                    "SELECT id, kind, payload FROM intents WHERE kind LIKE 'quarantined:%' "
                    "ORDER BY id")]

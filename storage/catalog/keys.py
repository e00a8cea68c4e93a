"""API keys (only their hashes), web sessions ended before their cookie expires, and
the signing secret when several nodes share the catalog."""
from __future__ import annotations

import base64
import os

from .database import Database


class Keys:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, key_id: str, workspace: str, secret_hash: str, scopes_json: str,
            name: str, now: float) -> None:
        with self.database.transaction() as tx:
            tx.execute("INSERT INTO api_keys(id, workspace, hash, scopes, name, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (key_id, workspace, secret_hash, scopes_json, name, now))

    def get(self, key_id: str) -> tuple[str, str, str] | None:
        """(workspace, secret hash, scopes JSON) of a key."""
        row = self.database.reader().execute(
            "SELECT workspace, hash, scopes FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def list(self, workspace: str | None = None) -> list[tuple[str, str, str, str, float]]:
        """(id, workspace, name, scopes JSON, created_at), oldest first."""
        where, args = ("WHERE workspace = ?", (workspace,)) if workspace else ("", ())
        return [tuple(r) for r in self.database.reader().execute(
            f"SELECT id, workspace, name, scopes, created_at FROM api_keys {where} "
            f"ORDER BY created_at, id", args)]

    def delete(self, key_id: str, workspace: str | None = None) -> str | None:
        """Delete the key (of ``workspace`` when given); its workspace, or None."""
        with self.database.transaction() as tx:
            row = tx.execute("SELECT workspace FROM api_keys WHERE id = ?",
                             (key_id,)).fetchone()
            if row is None or (workspace is not None and row[0] != workspace):
                return None
            tx.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            return str(row[0])

    def signing_secret(self) -> bytes:
        """The secret that signs URLs, cursors and cookies, shared by every node of the
        catalog: made once (the first node's write transaction wins; the others read
        it), so what one node signs verifies on all of them."""
        row = self.database.reader().execute(
            "SELECT value FROM meta WHERE key = 'signing_secret'").fetchone()
        if row is None:
            with self.database.transaction() as tx:
                tx.execute("INSERT INTO meta(key, value) VALUES ('signing_secret', ?) "
                           "ON CONFLICT(key) DO NOTHING",
                           (base64.b64encode(os.urandom(32)).decode(),))
                row = tx.execute("SELECT value FROM meta WHERE key = 'signing_secret'"
                                 ).fetchone()
        return base64.b64decode(row[0])

    def adopt_signing_secret(self, secret: bytes) -> bool:
        """Make ``secret`` the shared one unless the catalog has one already (a home
        migrated in keeps its signed URLs valid); whether it was adopted."""
        with self.database.transaction() as tx:
            return tx.execute("INSERT INTO meta(key, value) VALUES ('signing_secret', ?) "
                              "ON CONFLICT(key) DO NOTHING",
                              (base64.b64encode(secret).decode(),)).rowcount > 0

    # -- ended web sessions --------------------------------------------------------------
    def end_session(self, session_id: str, expires_at: float) -> None:
        with self.database.transaction() as tx:
            tx.execute("INSERT INTO ended_sessions(id, expires_at) VALUES (?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET expires_at = excluded.expires_at",
                       (session_id, expires_at))

    def session_ended(self, session_id: str, now: float) -> bool:
        with self.database.transaction() as tx:
            # Rows only need to outlive the cookie they stop; prune as we go.
            tx.execute("DELETE FROM ended_sessions WHERE expires_at < ?", (now,))
            return tx.execute("SELECT 1 FROM ended_sessions WHERE id = ?",
                              (session_id,)).fetchone() is not None

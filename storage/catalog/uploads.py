"""Upload sessions of the Breyta face (init -> PUT bytes -> complete); rows expire.

States: ``pending`` (no bytes yet), ``uploaded``, ``completing`` (claimed by one complete
request), ``completed``. Each state change is a conditional UPDATE, so two requests
racing on one session cannot both win.
"""
from __future__ import annotations

from typing import Any

from .database import Database, one_as_dict

_OPEN = "state IN ('pending', 'uploaded')"


class UploadSessions:
    def __init__(self, database: Database) -> None:
        self.database = database

    def open(self, session: dict[str, Any]) -> list[str]:
        """Insert a new session; an unfinished older one for the same uri is superseded.
        Returns the staging keys of the superseded sessions (their bytes go)."""
        with self.database.transaction() as tx:
            superseded = [r[0] for r in tx.execute(
                f"SELECT staging_key FROM upload_sessions WHERE workspace = ? AND uri = ? "
                f"AND {_OPEN}", (session["workspace"], session["uri"])).fetchall()]
            tx.execute(f"DELETE FROM upload_sessions WHERE workspace = ? AND uri = ? AND {_OPEN}",
                       (session["workspace"], session["uri"]))
            cols = list(session)
            tx.execute(f"INSERT INTO upload_sessions ({', '.join(cols)}) "
                       f"VALUES ({', '.join('?' * len(cols))})", [session[c] for c in cols])
        return superseded

    def get(self, workspace: str, session_id: str) -> dict[str, Any] | None:
        return one_as_dict(self.database.reader().execute(
            "SELECT * FROM upload_sessions WHERE id = ? AND workspace = ?",
            (session_id, workspace)))

    def latest_open(self, workspace: str, uri: str) -> dict[str, Any] | None:
        return one_as_dict(self.database.reader().execute(
            f"SELECT * FROM upload_sessions WHERE workspace = ? AND uri = ? AND {_OPEN} "
            f"ORDER BY created_at DESC LIMIT 1", (workspace, uri)))

    def move(self, session_id: str, to: str, from_states: tuple[str, ...],
             size: int | None = None) -> bool:
        """Change the state if it is one of ``from_states``; False when it was not."""
        marks = ", ".join("?" * len(from_states))
        set_size, args = (", size = ?", [size]) if size is not None else ("", [])
        with self.database.transaction() as tx:
            return tx.execute(
                f"UPDATE upload_sessions SET state = ?{set_size} WHERE id = ? AND "
                f"state IN ({marks})", [to, *args, session_id, *from_states]).rowcount > 0

    def sweep(self, now: float, limit: int = 1000) -> list[str]:
        """Drop expired sessions; returns their staging keys."""
        with self.database.transaction() as tx:
            rows = tx.execute("SELECT id, staging_key FROM upload_sessions WHERE "
                              "expires_at <= ? LIMIT ?", (now, limit)).fetchall()
            tx.executemany("DELETE FROM upload_sessions WHERE id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]

    def staging_keys(self) -> set[str]:
        return {r[0] for r in self.database.reader().execute(
            "SELECT staging_key FROM upload_sessions")}

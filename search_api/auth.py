"""API keys: one workspace per key, scopes, only a hash at rest.

A key reads ``rk_<id>_<secret>``. The id finds the row; the secret is compared by its
SHA-256 in constant time (the secret is 256 random bits, so a fast hash is enough: there
is nothing to brute-force). A request for another workspace answers NotFound, exactly
like a missing resource, before any scope is checked.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from storage.catalog import Catalog
from storage.errors import Forbidden, InvalidSpec, NotFound, Unauthorized
from storage.layout import check_workspace

SCOPES = ("resources.read", "resources.write", "workspace.admin")
READ, WRITE, ADMIN = SCOPES


@dataclass(frozen=True)
class Principal:
    key_id: str
    workspace: str
    scopes: frozenset[str]

    def require(self, workspace: str, scope: str) -> None:
        if workspace != self.workspace:
            raise NotFound("resource not found")
        if scope not in self.scopes and ADMIN not in self.scopes:
            raise Forbidden(f"this key lacks the {scope} scope")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def create(self, workspace: str, scopes: list[str], name: str | None, now: float) -> tuple[str, str]:
        """Returns (key id, the full key). The key is shown once; only its hash is kept."""
        check_workspace(workspace)
        scopes = [s.strip() for s in scopes if s.strip()]
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InvalidSpec(f"unknown scope(s) {', '.join(bad) or '(none)'}; "
                              f"use {', '.join(SCOPES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.catalog.transaction() as conn:
            conn.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,?)",
                         (key_id, workspace, _hash(secret), json.dumps(sorted(set(scopes))),
                          name or "", now))
        return key_id, f"rk_{key_id}_{secret}"

    def list(self, workspace: str | None = None) -> list[dict]:
        """Keys without their secrets: id, workspace, name, scopes, created-at."""
        where, args = ("WHERE workspace = ?", (check_workspace(workspace),)) if workspace \
            else ("", ())
        rows = self.catalog.conn.execute(
            f"SELECT id, workspace, name, scopes, created_at FROM api_keys {where} "
            f"ORDER BY created_at, id", args).fetchall()
        return [{"id": r[0], "workspace": r[1], "name": r[2] or None,
                 "scopes": json.loads(r[3]), "created-at": r[4]} for r in rows]

    def revoke(self, key_id: str, workspace: str | None = None) -> dict:
        """Delete a key: its requests are 401 from now on and its web sessions end.
        With ``workspace``, a key of another workspace is NotFound, like a missing one."""
        with self.catalog.transaction() as conn:
            row = conn.execute("SELECT workspace FROM api_keys WHERE id = ?",
                               (key_id,)).fetchone()
            if row is None or (workspace is not None and row[0] != workspace):
                raise NotFound(f"no key {key_id!r}")
            conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
        return {"id": key_id, "workspace": row[0], "revoked": True}

    # -- web sessions that can end before their cookie expires ------------------------
    def end_session(self, session_id: str, expires_at: float) -> None:
        with self.catalog.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO ended_sessions VALUES (?, ?)",
                         (session_id, expires_at))

    def session_ended(self, session_id: str, now: float) -> bool:
        with self.catalog.transaction() as conn:
            # Rows only need to outlive the cookie they stop; prune as we go.
            conn.execute("DELETE FROM ended_sessions WHERE expires_at < ?", (now,))
            return conn.execute("SELECT 1 FROM ended_sessions WHERE id = ?",
                                (session_id,)).fetchone() is not None

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.startswith("rk_"):
            raise Unauthorized("invalid API key")
        _, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        row = self.catalog.conn.execute(
            "SELECT workspace, hash, scopes FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[1], _hash(secret)):
            raise Unauthorized("invalid API key")
        return Principal(key_id, row[0], frozenset(json.loads(row[2])))

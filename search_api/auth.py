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

SCOPES = ("resources.read", "resources.write", "workspace.admin", "service.admin")
#: service.admin is the operator's: /metrics, quotas, health details. It grants nothing
#: inside a workspace (``require`` only honours workspace.admin there).
READ, WRITE, ADMIN, SERVICE_ADMIN = SCOPES


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
        self.catalog.keys.add(key_id, workspace, _hash(secret),
                              json.dumps(sorted(set(scopes))), name or "", now)
        return key_id, f"rk_{key_id}_{secret}"

    def list(self, workspace: str | None = None) -> list[dict]:
        """Keys without their secrets: id, workspace, name, scopes, created-at."""
        rows = self.catalog.keys.list(check_workspace(workspace) if workspace else None)
        return [{"id": r[0], "workspace": r[1], "name": r[2] or None,
                 "scopes": json.loads(r[3]), "created-at": r[4]} for r in rows]

    def revoke(self, key_id: str, workspace: str | None = None) -> dict:
        """Delete a key: its requests are 401 from now on and its web sessions end.
        With ``workspace``, a key of another workspace is NotFound, like a missing one."""
        owner = self.catalog.keys.delete(key_id, workspace)
        if owner is None:
            raise NotFound(f"no key {key_id!r}")
        return {"id": key_id, "workspace": owner, "revoked": True}

    # -- web sessions that can end before their cookie expires ------------------------
    def end_session(self, session_id: str, expires_at: float) -> None:
        self.catalog.keys.end_session(session_id, expires_at)

    def session_ended(self, session_id: str, now: float) -> bool:
        return self.catalog.keys.session_ended(session_id, now)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.startswith("rk_"):
            raise Unauthorized("invalid API key")
        _, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        row = self.catalog.keys.get(key_id)
        if row is None or not hmac.compare_digest(row[1], _hash(secret)):
            raise Unauthorized("invalid API key")
        return Principal(key_id, row[0], frozenset(json.loads(row[2])))

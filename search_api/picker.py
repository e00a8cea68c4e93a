"""The embeddable picker's core: allowed origins and short-lived picker sessions.

A workflow app on another origin embeds ``/ui/picker?token=...`` in an iframe. Its
*backend* mints the token with its own API key (``POST /v1/{ws}/picker/sessions``), so
the browser never holds a key and needs no cookie of ours (third-party cookies are
blocked anyway). The token is signed with the service's secret under a salt of its own
(it can never pass as a web session, signed URL or cursor) and carries: workspace, the
minting key's id, the one embedding origin, the slot/accept scope and an expiry.

Every use re-checks that the key still exists and that the origin is still allowed, so
removing either ends the sessions at once. The page sets ``frame-ancestors`` to that
origin and posts its messages to that origin only.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer

from indexer.query import Filters
from storage.errors import Forbidden, InvalidSpec, NotFound, Unauthorized
from storage.layout import check_workspace
from storage.records import Resource

from .auth import ADMIN, READ, WRITE, Principal

MAX_ORIGINS = 20
MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 3600, 900
_SALT = "resources-picker-session"


def normalize_origin(value: Any) -> str:
    """``scheme://host[:port]`` exactly as a browser serialises it, else InvalidSpec.

    No wildcard, no ``null``, no path: ``frame-ancestors`` and the ``postMessage`` target
    must name one concrete origin, and a comparison must be a plain string equality."""
    if not isinstance(value, str) or not value or len(value) > 300:
        raise InvalidSpec("an origin is a string such as https://app.example.com")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSpec(f"origin {value!r} must be http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username \
            or parts.password or "*" in value:
        raise InvalidSpec(f"origin {value!r} must be only scheme, host and port (no path, "
                          "wildcard or credentials)")
    host = parts.hostname.lower()
    if not all(c.isalnum() or c in ".-:[]" for c in host):
        raise InvalidSpec(f"origin {value!r} has an invalid host")
    if ":" in host:                       # IPv6 literal: brackets as browsers print it
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise InvalidSpec(f"origin {value!r} has an invalid port") from None
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class PickerSession:
    workspace: str
    key_id: str
    origin: str
    slot: str | None
    accept: str | None
    expires: int
    sid: str
    #: May upload a new file into the slot (asked for at mint, needs resources.write).
    write: bool = False

    @property
    def params(self) -> dict[str, str]:
        """The search filters this session is scoped to (kebab-case, as the API)."""
        return {k: v for k, v in (("slot", self.slot), ("accept", self.accept)) if v}

    def to_json(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "origin": self.origin, "slot": self.slot,
                "accept": self.accept, "expires": self.expires, "write": self.write}


def accepts(patterns: list[str], content_type: str | None) -> bool:
    """The same rule as the search's ``accept`` filter, for one record."""
    if not patterns or "*" in patterns or "*/*" in patterns:
        return True
    ctype = (content_type or "").split(";")[0].strip().lower()
    major = ctype.partition("/")[0]
    return any(ctype == p.lower() or (p.endswith("/*") and major == p[:-2].lower())
               for p in patterns)


def _patterns(session: PickerSession) -> list[str]:
    return [p.strip() for p in (session.accept or "").split(",") if p.strip()]


class PickerMixin:
    """Picker origins and sessions; mixed into ResourceService (``self`` is the service)."""

    def _picker_serializer(self) -> URLSafeSerializer:
        ser = getattr(self, "_picker_ser", None)
        if ser is None:
            ser = URLSafeSerializer(self.signer.secret, salt=_SALT)
            self._picker_ser = ser   # type: ignore[attr-defined]
        return ser

    def picker_origins(self, workspace: str) -> list[str]:
        return self.catalog.picker_origins.get(check_workspace(workspace))

    def set_picker_origins(self, workspace: str, origins: Any) -> list[str]:
        check_workspace(workspace)
        if not isinstance(origins, list):
            raise InvalidSpec('body must be {"origins": ["https://app.example.com"]}')
        clean = sorted({normalize_origin(o) for o in origins})
        if len(clean) > MAX_ORIGINS:
            raise InvalidSpec(f"at most {MAX_ORIGINS} origins per workspace")
        return self.catalog.picker_origins.replace(workspace, clean, self.now())

    def mint_picker_session(self, principal: Principal, workspace: str,
                            body: Any) -> tuple[str, PickerSession]:
        """(token, session) for an allowed origin; the key needs resources.read."""
        principal.require(workspace, READ)
        if not isinstance(body, dict):
            raise InvalidSpec('body must be {"origin": "https://app.example.com", '
                              '"slot": "...", "accept": "image/*", "ttl": 900}')
        origin = normalize_origin(body.get("origin"))
        if origin not in self.picker_origins(workspace):
            raise Forbidden(f"origin {origin} may not embed this workspace's picker (add it "
                            f"with: resources picker origins add {origin})")
        slot, accept = body.get("slot") or None, body.get("accept") or None
        for name, value in (("slot", slot), ("accept", accept)):
            if value is not None and not isinstance(value, str):
                raise InvalidSpec(f"{name} must be a string")
        Filters.from_params({"accept": accept})          # the search's own validation
        if slot is not None:
            self._slot(workspace, slot)                    # must be bound
        write = body.get("write", False)
        if not isinstance(write, bool):
            raise InvalidSpec("write must be true or false")
        if write:
            principal.require(workspace, WRITE)
            if slot is None:
                raise InvalidSpec("a picker that uploads needs a slot to upload into")
        ttl = body.get("ttl", DEFAULT_TTL)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidSpec(f"ttl must be an integer number of seconds, {MIN_TTL}..{MAX_TTL}")
        session = PickerSession(workspace, principal.key_id, origin, slot, accept,
                                int(self.now()) + ttl, secrets.token_urlsafe(9), write)
        token = self._picker_serializer().dumps(
            [session.workspace, session.key_id, session.origin, session.slot, session.accept,
             session.expires, session.sid, session.write])
        return token, session

    def picker_session(self, token: str | None) -> PickerSession:
        """The session of a valid token whose key and origin still stand, else 401."""
        if not token or len(token) > 2000:
            raise Unauthorized("missing picker token: the embedding app mints one")
        try:
            fields = self._picker_serializer().loads(token)
            session = PickerSession(*fields)
        except (BadSignature, TypeError, ValueError):
            raise Unauthorized("invalid picker token") from None
        if self.now() >= session.expires:
            raise Unauthorized("this picker session has expired: open the picker again")
        principal = self.web_principal(session.key_id)
        if principal is None or principal.workspace != session.workspace or \
                (READ not in principal.scopes and ADMIN not in principal.scopes):
            raise Unauthorized("the key behind this picker session is gone")
        if session.origin not in self.picker_origins(session.workspace):
            raise Unauthorized("this origin may no longer embed the picker")
        if session.write and WRITE not in principal.scopes and ADMIN not in principal.scopes:
            session = replace(session, write=False)      # the key lost write: read only
        return session

    def picker_upload_spec(self, session: PickerSession, filename: str | None,
                           content_type: str | None) -> dict[str, Any]:
        """The persist spec of an upload into the session's slot (its declared type must
        be one the session accepts); the face streams the body into it."""
        if not session.write or not session.slot:
            raise Forbidden("this picker session may not upload")
        if not accepts(_patterns(session), content_type):
            raise InvalidSpec(f"this picker accepts only {session.accept}")
        spec = {"slot": session.slot, "filename": filename or "upload",
                "content-type": content_type or None, "source-label": "picker upload"}
        return {k: v for k, v in spec.items() if v}

    def picker_check_upload(self, session: PickerSession, res: Resource) -> Resource:
        """Undo an upload whose stored type (sniffed, normalised) the session refuses."""
        if not accepts(_patterns(session), res.content_type):
            self.delete(session.workspace, res.uri)
            raise InvalidSpec(f"the file is {res.content_type}; this picker accepts only "
                              f"{session.accept}")
        return res

    def picker_resource(self, session: PickerSession, id_: str) -> Resource:
        """A resource inside the session's scope (workspace, slot, accept), else 404."""
        res = self.get_by_id(session.workspace, id_)
        if session.slot:
            slot = self._slot(session.workspace, session.slot)
            if res.storage_root != slot.root or \
                    res.storage_backend != self.backends[slot.connection].family:
                raise NotFound("resource not found")
        if not accepts(_patterns(session), res.content_type):
            raise NotFound("resource not found")
        return res

"""Signed URLs: HMAC-SHA256 over (workspace, uri, expiry) with the server's secret.

The secret is 32 random bytes created on first start in the data home with mode 0600.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

from storage.errors import BadSignature, InvalidSpec

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 86_400, 3_600


def load_secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:          # another process won the race
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_bytes()


def service_secret(settings, catalog) -> bytes:
    """The signing secret: from the catalog when several nodes share it (so what one
    node signs verifies on every node), else the data home's own file."""
    if settings.catalog_url:
        return catalog.keys.signing_secret()
    return load_secret(settings.secret_path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_ttl(value: object) -> int:
    if value in (None, ""):
        return DEFAULT_TTL
    try:
        ttl = int(str(value))
    except ValueError:
        raise InvalidSpec(f"ttl must be an integer number of seconds, not {value!r}") from None
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidSpec(f"ttl must be between {MIN_TTL} and {MAX_TTL} seconds")
    return ttl


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        #: The secret itself: the web session and picker serializers derive theirs from it.
        self.secret = secret
        # A key of its own for search cursors, derived from the one secret, so a
        # cursor can never be replayed as a signed-URL token or the other way round.
        self.cursor_secret = hmac.new(secret, b"search-cursor-key", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def sign(self, workspace: str, uri: str, expires: int) -> str:
        payload = json.dumps([workspace, uri, expires], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float) -> tuple[str, str]:
        """(workspace, uri) of a valid, unexpired token; BadSignature otherwise."""
        try:
            body, _, mac = token.partition(".")
            payload = _unb64(body)
            # Compare the canonical text, not decoded bytes: base64 ignores the spare low
            # bits of the last character, so a changed token would otherwise still verify.
            good = hmac.compare_digest(mac.encode(), _b64(self._mac(payload)).encode()) \
                and _b64(payload) == body
            workspace, uri, expires = json.loads(payload)
        except Exception:
            raise BadSignature("signature is not valid") from None
        if not good:
            raise BadSignature("signature is not valid")
        if now >= int(expires):
            raise BadSignature("signed URL has expired")
        return workspace, uri

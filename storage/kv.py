"""The KV pointer store: small JSON values per workspace, with TTL and compare-and-set.

Seed 000's pattern: persist the large output as a res:// ref, keep a compact KV record
that points to it, resolve the ref only when needed. A KV record never keeps a resource
alive; resolving reports a gone resource as `missing` or `expired`.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
import functools
from typing import Any, Callable, Iterator, TypeVar

from .catalog import Catalog, KvRow, Tx
from .clock import rfc3339
from .errors import (BadRequest, InvalidCursor, NotFound, ResourceError, TooLarge,
                     VersionConflict)
from .events import emit
from .layout import check_workspace

MAX_KEY = 512
MAX_VALUE_BYTES = 262_144
_URI = re.compile(r"res://v1/ws/[A-Za-z0-9._-]+/(?:file|result)/[0-9A-HJKMNP-TV-Z]{26}")


@dataclass
class KvEntry:
    workspace: str
    key: str
    value: Any
    version: int
    created_at: float
    updated_at: float
    expires_at: float | None
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "version": self.version,
                "created-at": rfc3339(self.created_at), "updated-at": rfc3339(self.updated_at),
                "expires-at": rfc3339(self.expires_at)}


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise BadRequest("key must be 1 to 512 characters")
    if len(key) > MAX_KEY:
        raise BadRequest(f"key is longer than {MAX_KEY} characters")
    for ch in key:
        if ord(ch) < 32 or 127 <= ord(ch) < 160 or not ch.isprintable() and ch != " ":
            raise BadRequest(f"key must not contain control characters (found U+{ord(ch):04X})")
    return key


def check_ttl(ttl: Any) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        if isinstance(ttl, str) and ttl.strip().isdigit():
            ttl = int(ttl)
        else:
            raise BadRequest("ttl must be a positive number of seconds")
    if ttl <= 0:
        raise BadRequest("ttl must be a positive number of seconds")
    return ttl


def encode_value(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"value is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("value is nested too deeply") from None
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise TooLarge(f"value is {len(text.encode()):,} bytes encoded; the limit is "
                       f"{MAX_VALUE_BYTES:,}")
    return text


def find_uris(value: Any) -> list[str]:
    """Every res:// uri in a JSON value, at any depth, in order, once."""
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, str):
            for m in _URI.finditer(node):
                found.setdefault(m.group(0), None)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(value)
    return list(found)


F = TypeVar("F", bound=Callable[..., Any])


def _observed(op: str) -> Callable[[F], F]:
    """Report each operation and its outcome (ok or the error code) to observers."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except ResourceError as exc:
                emit("kv", op=op, outcome=exc.code)
                raise
            emit("kv", op=op, outcome="ok")
            return result
        return inner  # type: ignore[return-value]
    return wrap


class KvStore:
    def __init__(self, catalog: Catalog, now: Callable[[], float]) -> None:
        self.catalog = catalog
        self.now = now

    def _row(self, workspace: str, key: str, tx: Tx | None = None) -> KvEntry | None:
        row = self.catalog.kv.get(workspace, key, tx)
        if row is None:
            return None
        entry = _entry(row)
        if entry.expires_at is not None and entry.expires_at <= self.now():
            return None          # expired keys are invisible at once
        return entry

    @_observed("set")
    def set(self, workspace: str, key: str, value: Any, ttl: Any = None,
            if_version: Any = None) -> tuple[KvEntry, bool]:
        check_workspace(workspace)
        check_key(key)
        ttl = check_ttl(ttl)
        if if_version is not None and (isinstance(if_version, bool) or not isinstance(if_version, int)
                                       or if_version < 0):
            raise BadRequest("if-version must be a non-negative integer (0: only if absent)")
        text = encode_value(value)
        now = self.now()
        with self.catalog.transaction() as conn:
            current = self._row(workspace, key, conn)
            if if_version is not None:
                have = current.version if current else 0
                if have != if_version:
                    raise VersionConflict(
                        f"key {key!r} is at version {have}, not {if_version}", version=have)
            version = current.version + 1 if current else 1
            created = current.created_at if current else now
            seq = self.catalog.changes.next_seq(conn)
            expires = now + ttl if ttl else None
            self.catalog.kv.put(conn, (workspace, key, text, version, created, now, expires, seq))
        return KvEntry(workspace, key, json.loads(text), version, created, now, expires, seq), \
            current is None

    @_observed("get")
    def get(self, workspace: str, key: str) -> KvEntry:
        check_key(key)
        entry = self._row(workspace, key)
        if entry is None:
            # The same words as another workspace's key (CONTRACT: answers as a missing one).
            raise NotFound("resource not found")
        return entry

    @_observed("delete")
    def delete(self, workspace: str, key: str) -> KvEntry:
        check_key(key)
        with self.catalog.transaction() as conn:
            entry = self._row(workspace, key, conn)
            if entry is None:
                raise NotFound("resource not found")
            self.catalog.kv.delete(conn, workspace, key)
        return entry

    @_observed("list")
    def list(self, workspace: str, prefix: str = "", limit: int = 20,
             cursor: str | None = None) -> tuple[list[KvEntry], int, str | None]:
        """Newest first (last set first), keyset-paged."""
        before = None
        if cursor:
            try:
                before = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
            except Exception:
                raise InvalidCursor("cursor is not valid") from None
            # A keyset position outside SQLite's integer range would be an overflow
            # error deep in the driver; it can only be a forged cursor.
            if not 0 <= before <= 2**63 - 1:
                raise InvalidCursor("cursor is not valid")
        rows, total = self.catalog.kv.page(workspace, prefix, self.now(), before, limit)
        entries = [_entry(r) for r in rows]
        next_cursor = None
        if len(entries) == limit:
            next_cursor = base64.urlsafe_b64encode(str(entries[-1].seq).encode()).decode().rstrip("=")
        return entries, total, next_cursor

    def expired_keys(self) -> list[str]:
        return [f"{ws}:{key}" for ws, key in self.catalog.kv.expired(self.now())]

    def sweep(self) -> int:
        return self.catalog.kv.sweep(self.now())

    def iter_all(self) -> Iterator[KvEntry]:
        return (_entry(r) for r in self.catalog.kv.live(self.now()))


def _entry(row: KvRow) -> KvEntry:
    return KvEntry(row[0], row[1], json.loads(row[2]), *row[3:])

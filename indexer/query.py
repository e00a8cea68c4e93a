"""Search filters and query parsing: everything becomes one Tantivy query, ANDed.

Filters are never applied to a page after the fact: each is a term (or range) clause
in the same boolean query, so `meta.total` is exact and paging never skips.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

import tantivy

from storage.errors import InvalidCursor, InvalidQuery, InvalidSpec
from storage.layout import split_segments

from .filterspec import DEFAULT_LIMIT, KEYWORD_MODES, MAX_LIMIT, SORTS  # noqa: F401 - re-exported
from .schema import EXACT_FIELDS, TEXT_FIELDS

#: kebab-case spellings users type, mapped to the index's own field names.
FIELD_ALIASES = {f.replace("_", "-"): f for f in (*EXACT_FIELDS, *TEXT_FIELDS)}
FIELD_ALIASES.update({"tags": "tags", "tag": "tag", "display-name": "display_name"})
FIELD_ALIASES.update({f: f for f in (*EXACT_FIELDS, *TEXT_FIELDS)})


def _csv(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        out.extend(p.strip() for p in str(item).split(",") if p.strip())
    return out


@dataclass
class Filters:
    types: list[str] = field(default_factory=list)
    content_sources: list[str] = field(default_factory=list)
    tier: str | None = None
    exclude_tier: str | None = None
    storage_backend: str | None = None
    storage_root: str | None = None
    path_prefix: str | None = None
    slot: str | None = None
    accept: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    workflow_id: str | None = None
    flow: str | None = None
    step: str | None = None
    uri_prefix: str | None = None      # the Breyta face's `prefix`: a regex on the raw uri
    since: int | None = None           # epoch seconds, on updated-at (the write time)
    until: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    sort: str | None = None            # None: relevance with words, newest without

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Filters":
        """From query parameters / CLI options (kebab-case keys, comma lists)."""
        f = cls()
        f.types = _csv(params.get("type")) + _csv(params.get("types"))
        f.content_sources = _csv(params.get("content-sources"))
        for t in (*f.types, *f.content_sources):
            if t not in ("file", "result"):
                raise InvalidSpec(f"type must be 'file' or 'result', not {t!r}")
        for key in ("tier", "exclude-tier"):
            value = params.get(key)
            if value is not None and value not in ("retained", "ephemeral"):
                raise InvalidSpec(f"{key} must be 'retained' or 'ephemeral', not {value!r}")
        f.tier = params.get("tier") or None
        f.exclude_tier = params.get("exclude-tier") or None
        for key in ("storage-backend", "storage-root", "slot", "workflow-id", "flow", "step"):
            value = params.get(key)
            setattr(f, key.replace("-", "_"), str(value) if value not in (None, "") else None)
        if f.storage_root is not None:
            f.storage_root = f.storage_root.strip("/")
        prefix = params.get("path-prefix")
        if prefix not in (None, ""):
            prefix = str(prefix).strip("/")
            if prefix:
                split_segments(prefix, "path-prefix")
                f.path_prefix = prefix
        f.accept = _csv(params.get("accept"))
        for pattern in f.accept:
            if not re.fullmatch(r"[\w.+-]+/([\w.+-]+|\*)|\*/\*|\*", pattern):
                raise InvalidSpec(f"accept pattern {pattern!r} is not a MIME type or 'type/*'")
        f.tags = _csv(params.get("tag")) + _csv(params.get("tags"))
        for key in ("since", "until"):
            value = params.get(key)
            if value not in (None, ""):
                setattr(f, key, parse_when(str(value), key))
        for key in ("min-size", "max-size"):
            value = params.get(key)
            if value not in (None, ""):
                setattr(f, key.replace("-", "_"), parse_size(str(value), key))
        sort = params.get("sort")
        if sort not in (None, ""):
            if sort not in SORTS:
                raise InvalidSpec(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
            f.sort = sort
        uri_prefix = params.get("uri-prefix")
        if uri_prefix not in (None, ""):
            if len(str(uri_prefix)) > 300:
                raise InvalidSpec("uri prefix is longer than 300 characters")
            f.uri_prefix = str(uri_prefix)
        return f


_AGE = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?", re.I)
_SIZE_UNITS = {"b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
               "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3}


def parse_when(value: str, what: str = "since") -> int:
    """Epoch seconds from RFC 3339 or an age before now (``7d``, ``12h``, ``30m``)."""
    from storage.clock import now, parse_rfc3339
    value = value.strip()
    m = _AGE.fullmatch(value)
    if m:
        return int(now() - int(m.group(1)) * _AGE_SECONDS[m.group(2)])
    try:
        return int(parse_rfc3339(value))
    except ValueError:
        raise InvalidSpec(f"{what} must be an RFC 3339 time (2026-01-31T00:00:00Z) or an "
                          f"age such as 30m, 12h, 7d, 2w; not {value!r}") from None


def parse_size(value: str, what: str = "min-size") -> int:
    """Bytes from ``1234``, ``10KiB``, ``5MB`` (KiB/MiB/GiB and k/m/g are powers of 1024)."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise InvalidSpec(f"{what} must be a size in bytes or with a unit (10KiB, 5MB, 1GiB), "
                          f"not {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def parse_limit(value: Any, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"limit must be an integer, not {value!r}") from None
    if not 1 <= limit <= maximum:
        raise InvalidSpec(f"limit must be between 1 and {maximum}")
    return limit


def parse_flag(value: Any, name: str) -> bool:
    """A boolean option from a query parameter, CLI flag or Python value."""
    if value in (None, "", False):
        return False
    if value is True:
        return True
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidSpec(f"{name} must be true or false, not {value!r}")


# -- cursors -----------------------------------------------------------------------------
#: Deepest result a ranked page may start at (Elasticsearch's ``max_result_window``):
#: Tantivy allocates per skipped hit, so an unbounded offset is a memory bomb.
MAX_RESULT_WINDOW = 10_000
_MAX_SEQ = 2**63 - 1
_MAC_BYTES = 16


def _cursor_mac(secret: bytes, payload: bytes, fingerprint: str) -> bytes:
    return hmac.new(secret, b"cursor\n" + fingerprint.encode() + b"\n" + payload,
                    hashlib.sha256).digest()[:_MAC_BYTES]


_KINDS = {"seq": b"s", "off": b"o"}


def encode_cursor(kind: str, value: int, fingerprint: str, secret: bytes) -> str:
    """An opaque, short cursor: the position plus an HMAC over it and the query
    fingerprint (which binds workspace, text, filters and order). The fingerprint is not
    carried: the service recomputes it, so a cursor only verifies for its own query."""
    payload = _KINDS[kind] + struct.pack(">Q", value)
    return base64.urlsafe_b64encode(payload + _cursor_mac(secret, payload, fingerprint)
                                    ).decode().rstrip("=")


def decode_cursor(cursor: str | None, fingerprint: str,
                  secret: bytes) -> tuple[str, int] | None:
    if not cursor:
        return None
    bad = InvalidCursor("cursor is not valid for this query: pass meta.next-cursor "
                        "unchanged, with the same query and filters")
    if len(cursor) > 64:
        raise bad
    try:
        blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except Exception:
        raise bad from None
    if len(blob) != 9 + _MAC_BYTES:
        raise bad
    payload, mac = blob[:9], blob[9:]
    if not hmac.compare_digest(mac, _cursor_mac(secret, payload, fingerprint)):
        raise bad
    kind = {v: k for k, v in _KINDS.items()}.get(payload[:1])
    (value,) = struct.unpack(">Q", payload[1:])
    if kind is None or value > _MAX_SEQ:
        raise bad
    if kind == "off" and value > MAX_RESULT_WINDOW:
        raise InvalidCursor(f"ranked results page only to {MAX_RESULT_WINDOW:,} hits; "
                            f"narrow the query or browse newest-first")
    return kind, value


def check_window(offset: int, limit: int) -> None:
    """Reject a ranked page that would reach past ``MAX_RESULT_WINDOW``."""
    if offset < 0 or offset + limit > MAX_RESULT_WINDOW:
        raise InvalidSpec(f"offset + limit must stay within {MAX_RESULT_WINDOW:,} "
                          f"(ranked results page only that deep; narrow the query)")


# -- query text -----------------------------------------------------------------------------
_TOKEN = re.compile(r'"[^"]*"?|\(|\)|[^\s()"]+(?:"[^"]*"?)?')   # field:"a b" is one token
_OPERATORS = {"AND", "OR", "NOT"}
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z_-]*")
#: The field names offered to users in messages (kebab-case, as typed).
QUERY_FIELDS = tuple(sorted({f.replace("_", "-") for f in (*EXACT_FIELDS, *TEXT_FIELDS)}
                            - {"workspace", "path-prefix", "content-major"}))
#: Characters that are query syntax inside a word; such words are searched literally.
_LITERAL = re.compile(r"[:'^~\[\]{}!\\<>=`|?]")


def _rewrite(q: str, mode: str) -> str:
    """Apply the keyword mode to plain word lists and map kebab-case field names.

    Only queries made of plain words (no operators, no parentheses, no +/-) are
    rewritten for mode ``all``; explicit syntax is left to the parser as typed.
    """
    tokens = _TOKEN.findall(q)
    out = []
    for tok in tokens:
        if tok.startswith('"') or tok in _OPERATORS or tok in "()":
            out.append(tok)
            continue
        sign = tok[0] if tok[0] in "+-" and len(tok) > 1 else ""
        body = tok[len(sign):]
        if ":" in body:
            name, _, rest = body.partition(":")
            if rest.strip("()") == "*":
                # Tantivy reads field:* as "has a value", which only fast fields support:
                # on any other field it fails at search time instead of parse time.
                raise InvalidQuery(f"{name}:* (any value) is not supported: search for a "
                                   f"value such as {name}:report, or use * for everything")
            if name in FIELD_ALIASES and rest:
                out.append(f"{sign}{FIELD_ALIASES[name]}:{rest}")
                continue
            if rest and _FIELD_NAME.fullmatch(name) and not rest.startswith("/"):
                # `nosuchfield:foo` would otherwise be searched as a phrase and find
                # nothing, silently; a typo in a field name deserves a message.
                raise InvalidQuery(
                    f"unknown field {name!r} in {tok!r}; fields: {', '.join(QUERY_FIELDS)} "
                    f"(to search the text itself, quote it: \"{body}\")", field=name)
        if _LITERAL.search(body):
            # User text with punctuation the parser would read as syntax (10:30, it's,
            # https://host/a): search it as the phrase of its words.
            body = '"' + body.replace('"', " ").replace("\\", " ") + '"'
        out.append(sign + body)
    if out and all(t.startswith("-") and len(t) > 1 for t in out):
        # Only exclusions ("-draft"): everything except those, not nothing.
        out.insert(0, "*")
    plain = all(t not in _OPERATORS and t not in "()" and not t.startswith(("+", "-"))
                for t in out)
    if mode == "all" and plain and len(out) > 1:
        return " AND ".join(out)
    return " ".join(out)


def parse_text(index: tantivy.Index, q: str, mode: str = "all") -> tantivy.Query | None:
    """The user's query, or None for match-all. Raises InvalidQuery, never crashes."""
    q = (q or "").strip()
    if mode not in KEYWORD_MODES:
        raise InvalidSpec(f"keyword-mode must be one of {', '.join(KEYWORD_MODES)}")
    if q in ("", "*"):
        return None
    if len(q) > 2000:
        raise InvalidQuery("query is longer than 2000 characters")
    text = _rewrite(q, mode)
    try:
        return index.parse_query(text, list(TEXT_FIELDS), field_boosts=dict(TEXT_FIELDS))
    except BaseException as exc:  # noqa: BLE001 - tantivy may panic (BaseException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        msg = str(exc).split("\n")[0][:300]
        raise InvalidQuery(f"query could not be understood: {msg}", query=q) from None


def _term(schema: tantivy.Schema, name: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(schema, name, value)


def _any_of(schema: tantivy.Schema, name: str, values: list[str]) -> tantivy.Query:
    if len(values) == 1:
        return _term(schema, name, values[0])
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, _term(schema, name, v)) for v in values])


def filter_clauses(schema: tantivy.Schema, workspace: str, f: Filters, now: int
                   ) -> tuple[list[tantivy.Query], list[tantivy.Query]]:
    """(clauses a document must match, clauses it must not match) for the filters.

    Expiry is not among them: see ``expired_query``."""
    must = [_term(schema, "workspace", workspace)]
    must_not: list[tantivy.Query] = []
    types = sorted(set(f.types))
    sources = sorted(set(f.content_sources))
    if types:
        must.append(_any_of(schema, "type", types))
    if sources:
        must.append(_any_of(schema, "type", sources))
    if f.tier:
        must.append(_term(schema, "tier", f.tier))
    for name in ("storage_backend", "storage_root", "workflow_id", "flow", "step"):
        value = getattr(f, name)
        if value:
            must.append(_term(schema, name, value))
    if f.path_prefix:
        must.append(_term(schema, "path_prefix", f.path_prefix))
    for tag in f.tags:
        must.append(_term(schema, "tag", tag))
    if f.uri_prefix:
        # Every character but [A-Za-z0-9] as \x{..}: the prefix is matched literally.
        literal = "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}"
                          for c in f.uri_prefix)
        must.append(tantivy.Query.regex_query(schema, "uri", literal + ".*"))
    if f.accept and "*/*" not in f.accept and "*" not in f.accept:
        alts = []
        for pattern in f.accept:
            major, _, minor = pattern.lower().partition("/")
            alts.append(_term(schema, "content_major", major) if minor == "*"
                        else _term(schema, "content_type", pattern.lower()))
        must.append(tantivy.Query.boolean_query([(tantivy.Occur.Should, a) for a in alts]))
    if f.since is not None or f.until is not None:
        low = f.since if f.since is not None else 0
        high = (f.until - 1) if f.until is not None else 2**63 - 1
        must.append(tantivy.Query.range_query(schema, "updated", tantivy.FieldType.Integer,
                                              low, high))
    if f.min_size is not None or f.max_size is not None:
        must.append(tantivy.Query.range_query(
            schema, "size", tantivy.FieldType.Integer,
            f.min_size if f.min_size is not None else 0,
            f.max_size if f.max_size is not None else 2**63 - 1))
    if f.exclude_tier:
        must_not.append(_term(schema, "tier", f.exclude_tier))
    return must, must_not


def expired_query(schema: tantivy.Schema, now: int) -> tantivy.Query:
    """Documents expired at ``now`` but not yet swept by gc: a search excludes them.

    Answered from the term dictionary (``expires`` is not a fast field, schema.py): it
    holds only the few unswept documents, so it costs next to nothing to run alone."""
    return tantivy.Query.range_query(schema, "expires", tantivy.FieldType.Integer, 0, now)


def fingerprint(workspace: str, q: str, f: Filters, mode: str, order: str) -> str:
    import hashlib
    raw = json.dumps([workspace, q, f.__dict__, mode, order], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]

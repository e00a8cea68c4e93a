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
from dataclasses import dataclass, field
from typing import Any, Mapping

import tantivy

from storage.errors import InvalidCursor, InvalidQuery, InvalidSpec
from storage.layout import split_segments

from .schema import EXACT_FIELDS, TEXT_FIELDS

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
KEYWORD_MODES = ("all", "any", "balanced")
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
        uri_prefix = params.get("uri-prefix")
        if uri_prefix not in (None, ""):
            if len(str(uri_prefix)) > 300:
                raise InvalidSpec("uri prefix is longer than 300 characters")
            f.uri_prefix = str(uri_prefix)
        return f


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


def _cursor_mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"cursor\n" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(kind: str, value: int, fingerprint: str, secret: bytes) -> str:
    """An opaque cursor: the position plus an HMAC over it and the query fingerprint
    (which already binds the workspace, text, filters and order), so a client can only
    hand back a cursor the service itself issued for this very query."""
    raw = json.dumps({"k": kind, "v": value, "f": fingerprint}, separators=(",", ":")).encode()
    blob = raw + _cursor_mac(secret, raw)
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_cursor(cursor: str | None, fingerprint: str,
                  secret: bytes) -> tuple[str, int] | None:
    if not cursor:
        return None
    bad = InvalidCursor("cursor is not valid (pass meta.next-cursor unchanged)")
    if len(cursor) > 512:
        raise bad
    try:
        blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except Exception:
        raise bad from None
    raw, mac = blob[:-_MAC_BYTES], blob[-_MAC_BYTES:]
    if len(blob) <= _MAC_BYTES or not hmac.compare_digest(mac, _cursor_mac(secret, raw)):
        raise bad
    try:
        data = json.loads(raw)
        kind, value, fp = data["k"], data["v"], data["f"]
    except Exception:
        raise bad from None
    if fp != fingerprint:
        raise InvalidCursor("cursor belongs to another query or filter set")
    if kind not in ("seq", "off") or type(value) is not int or not 0 <= value <= _MAX_SEQ:
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

"""Content types: parsed and normalised once, at persist, so what is served is exactly
what was checked.

A declared type is untrusted input: ``application/pdf,text/html`` or
``application/pdf;,text/html`` passed a prefix check and Chromium rendered it as HTML.
Here a type must be one ``type/subtype`` of RFC 9110 tokens plus known parameters; the
stored form is lower-case ``type/subtype`` with at most a ``charset``.
"""
from __future__ import annotations

import re

from .errors import InvalidSpec

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TYPE = re.compile(rf"^({_TOKEN})/({_TOKEN})$")
_PARAM = re.compile(rf'^({_TOKEN})=({_TOKEN}|"[^"\\]*")$')
_CHARSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+\-]{0,39}$")
MAX_LENGTH = 255

#: Types a browser shows without running anything: served inline (still sandboxed).
#: Everything else that is not a PDF is served as an attachment.
INERT_TYPES = frozenset({
    "text/plain", "text/csv", "text/markdown", "text/tab-separated-values",
    "application/json", "application/x-ndjson",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
    "audio/mpeg", "audio/ogg", "audio/wav", "audio/webm", "audio/flac",
    "video/mp4", "video/webm", "video/ogg",
})
PDF = "application/pdf"


def normalize(value: str, what: str = "content-type") -> str:
    """The canonical form of a declared content type; InvalidSpec naming what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpec(f"{what} must be a MIME type such as text/plain")
    if len(value) > MAX_LENGTH:
        raise InvalidSpec(f"{what} is longer than {MAX_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) > 126 for ch in value):
        raise InvalidSpec(f"{what} must be printable ASCII (no CR, LF or other control or "
                          f"non-ASCII characters)")
    main, *params = [p.strip() for p in value.split(";")]
    m = _TYPE.match(main)
    if not m:
        raise InvalidSpec(f"{what} {value!r} is not one MIME type (expected type/subtype)")
    out = f"{m.group(1).lower()}/{m.group(2).lower()}"
    charset = None
    for param in params:
        if not param:
            raise InvalidSpec(f"{what} {value!r} has an empty parameter")
        pm = _PARAM.match(param)
        if not pm:
            raise InvalidSpec(f"{what} {value!r} has a malformed parameter {param!r}")
        name, val = pm.group(1).lower(), pm.group(2).strip('"')
        if name == "charset":
            if not _CHARSET.match(val):
                raise InvalidSpec(f"{what} {value!r} has an invalid charset")
            charset = val.lower()
        # Other parameters (boundary, version, ...) carry nothing this service serves by.
    return f"{out}; charset={charset}" if charset else out


def safe_or_default(value: str | None) -> str:
    """For serving a stored type (records written before normalisation existed): the
    normalised form, or ``application/octet-stream`` when it does not parse."""
    try:
        return normalize(value or "")
    except InvalidSpec:
        return "application/octet-stream"


def essence(value: str) -> str:
    """``type/subtype`` without parameters."""
    return value.split(";", 1)[0].strip().lower()


def is_pdf(value: str) -> bool:
    return essence(value) == PDF


def is_inert(value: str) -> bool:
    return essence(value) in INERT_TYPES

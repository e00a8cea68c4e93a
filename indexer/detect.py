"""Decide what bytes are, from the bytes (libmagic), the declared type only as a hint."""
from __future__ import annotations

import mimetypes
import threading

import magic

HEAD_BYTES = 2048
_TEXT_APPLICATION = {
    "application/json", "application/xml", "application/x-yaml", "application/yaml",
    "application/javascript", "application/x-javascript", "application/x-sh",
    "application/x-shellscript", "application/sql", "application/toml",
    "application/x-ndjson", "application/csv", "image/svg+xml",
}
_EXTRA_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".yaml": "application/yaml",
                ".yml": "application/yaml", ".csv": "text/csv", ".json": "application/json",
                ".py": "text/x-python", ".toml": "application/toml", ".ndjson": "application/x-ndjson"}


_local = threading.local()


def sniff(head: bytes) -> str:
    """libmagic's MIME type of the first bytes.

    One libmagic handle per thread: python-magic's shared handle is behind a lock, and
    libmagic (called through ctypes, without the GIL) is the costly part of a persist,
    so bulk persists sniff on several threads at once."""
    if not head:
        return "application/x-empty"
    handle = getattr(_local, "magic", None)
    if handle is None:
        handle = _local.magic = magic.Magic(mime=True)
    return handle.from_buffer(head[:HEAD_BYTES])


def is_textual_type(mime: str | None) -> bool:
    if not mime:
        return False
    mime = mime.split(";")[0].strip().lower()
    return (mime.startswith("text/") or mime in _TEXT_APPLICATION
            or mime.endswith("+json") or mime.endswith("+xml"))


def looks_like_text(head: bytes) -> bool:
    """A second opinion where libmagic gives up (1-byte files, BOM-less UTF-16 aside):
    no NUL bytes and mostly printable."""
    if not head or b"\x00" in head:
        return False
    sample = head[:8192]
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable / len(sample) > 0.95


def classify(head: bytes, declared: str | None, detected: str | None = None) -> tuple[str, str]:
    """(detected MIME, kind) where kind is 'text', 'pdf' or 'binary'. ``detected`` is
    libmagic's answer when the caller already has it (libmagic is the costly part)."""
    detected = detected or sniff(head)
    if detected == "application/pdf":
        return detected, "pdf"
    if is_textual_type(detected):
        return detected, "text"
    if detected in ("application/octet-stream", "application/x-empty") and \
            is_textual_type(declared) and looks_like_text(head):
        # libmagic's known blind spots (1-byte files, odd charsets) with a text hint.
        return detected, "text"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and detected == "application/octet-stream":
        return "text/plain", "text"   # UTF-16 with BOM that libmagic missed
    return detected, "binary"


def guess_content_type(head: bytes, filename: str | None, declared: str | None,
                       detected: str | None = None) -> str:
    """The record's content type: declared, else the filename's type when libmagic is
    only generic (text/plain, octet-stream), else libmagic's."""
    if declared:
        return declared
    detected = detected or sniff(head)
    by_name = None
    if filename:
        dot = filename.rfind(".")
        ext = filename[dot:].lower() if dot >= 0 else ""
        by_name = _EXTRA_TYPES.get(ext) or mimetypes.guess_type(filename)[0]
    if detected in ("text/plain", "application/octet-stream", "application/x-empty") and by_name:
        if detected == "application/octet-stream" and is_textual_type(by_name) and not looks_like_text(head):
            return detected
        return by_name
    return detected

"""Bounded text extraction (CONTRACT: indexing rules).

At most ``extract_max_read`` bytes are read and ``extract_max_chars`` characters kept.
Text is decoded by BOM, then strict UTF-8, then charset detection, then Latin-1 (which
never fails). A failed extraction is reported in the outcome; it never raises.
"""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass

from charset_normalizer import from_bytes

from storage.events import emit
from storage.records import Extraction

from .detect import HEAD_BYTES, classify
from .pdf import PdfWorker


@dataclass
class Extracted:
    text: str
    outcome: Extraction


def decode_text(data: bytes) -> tuple[str, str | None]:
    """(text, note); never raises."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        if exc.start > len(data) - 4:   # cut inside a multi-byte character at the bound
            return data[: exc.start].decode("utf-8"), None
    best = from_bytes(data[:262_144]).best()
    if best is not None and best.encoding:
        return data.decode(best.encoding, errors="replace"), None
    return data.decode("latin-1"), "charset unknown: decoded as latin-1"


def extract(path: str, size: int, declared_type: str | None, max_read: int, max_chars: int,
            pdf: PdfWorker, pdf_max_pages: int, pdf_timeout: float,
            detected: str | None = None) -> Extracted:
    """Extract the text of the staged file at ``path`` within the bounds."""
    started = time.monotonic()
    result = _extract(path, size, declared_type, max_read, max_chars, pdf, pdf_max_pages,
                      pdf_timeout, detected)
    emit("extract", extractor=result.outcome.extractor, outcome=outcome_label(result.outcome),
         seconds=time.monotonic() - started)
    return result


def outcome_label(outcome: Extraction) -> str:
    """ok / truncated / timeout / error: the PDF worker reports a kill as "timeout: ..."."""
    if outcome.error:
        return "timeout" if outcome.error.startswith("timeout") else "error"
    return "truncated" if outcome.truncated else "ok"


def _extract(path: str, size: int, declared_type: str | None, max_read: int, max_chars: int,
             pdf: PdfWorker, pdf_max_pages: int, pdf_timeout: float,
             detected: str | None) -> Extracted:
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            detected, kind = classify(head, declared_type, detected)
            if kind == "text":
                fh.seek(0)
                data = fh.read(max_read)
                text, note = decode_text(data)
                truncated = size > max_read or len(text) > max_chars
                text = text[:max_chars]
                return Extracted(text, Extraction("text", len(text), truncated, note, detected))
        if kind == "pdf":
            result = pdf.extract(path, pdf_max_pages, max_chars, pdf_timeout)
            text = result.text[:max_chars]
            return Extracted(text, Extraction("pdf", len(text), result.truncated,
                                              result.error, detected))
        return Extracted("", Extraction("none", 0, False, None, detected))
    except OSError as exc:
        return Extracted("", Extraction("none", 0, False, f"read failed: {exc}", None))

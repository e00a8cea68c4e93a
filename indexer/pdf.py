"""PDF text layer with pypdf, in a worker process that is killed at the time bound.

A crafted page can keep ``extract_text()`` busy for minutes, and pypdf swallows
ordinary exceptions, so checking the clock between pages is not enough. The worker
also runs with pypdf's work limits lowered, so most bombs stop early on their own.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

from . import killable


@dataclass
class PdfText:
    text: str
    truncated: bool
    error: str | None


def _limit_pypdf() -> None:
    import pypdf
    try:
        import dataclasses
        pypdf.apply_configuration(dataclasses.replace(
            pypdf.get_configuration(),
            stream_parsing_work_maximum_count=1_000_000,
            xform_maximum_invocations_per_extraction=2_000,
            stream_decoding_work_maximum_length=50_000_000))
    except Exception:  # older/newer pypdf without these knobs: the kill still bounds it
        pass


def extract_pdf_text(path: str, max_pages: int, max_chars: int) -> PdfText:
    """In-process extraction (used inside the worker)."""
    from pypdf import PdfReader
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:
                return PdfText("", False, f"encrypted: {type(exc).__name__}: {exc}")
            if not ok:
                return PdfText("", False, "encrypted: a password is required")
        parts: list[str] = []
        total = 0
        pages = reader.pages
        truncated = len(pages) > max_pages
        for page in list(pages)[:max_pages]:
            text = page.extract_text() or ""
            parts.append(text)
            total += len(text) + 1
            if total > max_chars:
                truncated = True
                break
        return PdfText("\n".join(parts)[:max_chars], truncated, None)
    except BaseException as exc:  # noqa: BLE001 - RecursionError, DependencyError, ...
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return PdfText("", False, f"{type(exc).__name__}: {exc}"[:500])


def _answer(job: tuple[str, int, int]) -> tuple[str, bool, str | None]:
    path, max_pages, max_chars = job
    result = extract_pdf_text(path, max_pages, max_chars)
    return result.text, result.truncated, result.error


def _worker(conn: Connection) -> None:
    import logging
    logging.getLogger("pypdf").setLevel(logging.ERROR)   # broken files are expected here
    _limit_pypdf()
    import pypdf  # noqa: F401 - imported before saying ready, so no job pays for it
    killable.serve_jobs(conn, _answer)


class PdfWorker:
    """One long-lived worker process per service, restarted after a kill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker = killable.KillableWorker(_worker, "pdf-extract",
                                               "PDF extraction worker")

    def extract(self, path: str, max_pages: int, max_chars: int, timeout: float) -> PdfText:
        with self._lock:
            try:
                text, truncated, error = self._worker.call((path, max_pages, max_chars),
                                                           timeout)
            except killable.Unavailable as exc:
                return PdfText("", False, f"extractor unavailable: {exc}")
            except killable.Crashed as exc:   # never fails the persist: report, and
                # the next call starts afresh
                return PdfText("", False, f"extractor failed: {exc}")
            except killable.TimedOut:
                return PdfText("", False, f"timeout: PDF extraction passed {timeout:g} s")
            return PdfText(text, truncated, error)

    def close(self) -> None:
        with self._lock:
            self._worker.kill()

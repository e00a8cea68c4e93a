"""PDF text layer with pypdf, in a worker process that is killed at the time bound.

A crafted page can keep ``extract_text()`` busy for minutes, and pypdf swallows
ordinary exceptions, so checking the clock between pages is not enough. The worker
also runs with pypdf's work limits lowered, so most bombs stop early on their own.
"""
from __future__ import annotations

import multiprocessing as mp
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection


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


def _worker(conn: Connection) -> None:
    import logging
    logging.getLogger("pypdf").setLevel(logging.ERROR)   # broken files are expected here
    _limit_pypdf()
    import pypdf  # noqa: F401 - imported before saying ready, so no job pays for it
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        path, max_pages, max_chars = job
        result = extract_pdf_text(path, max_pages, max_chars)
        conn.send((result.text, result.truncated, result.error))


STARTUP_SECONDS = 60.0


class PdfWorker:
    """One long-lived worker process per service, restarted after a kill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")   # fork is unsafe in a threaded server
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child,), daemon=True, name="pdf-extract")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        # Start-up (a fresh interpreter importing pypdf) is not part of any file's time
        # bound: wait for the worker to say it is ready before handing it a job.
        if not parent.poll(STARTUP_SECONDS) or parent.recv() != "ready":
            self._kill()
            raise RuntimeError("the PDF extraction worker did not start")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def extract(self, path: str, max_pages: int, max_chars: int, timeout: float) -> PdfText:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._kill()
                try:
                    self._start()
                except (RuntimeError, OSError, EOFError) as exc:
                    return PdfText("", False, f"extractor unavailable: {exc}")
            assert self._conn is not None
            try:
                self._conn.send((path, max_pages, max_chars))
                if self._conn.poll(timeout):
                    text, truncated, error = self._conn.recv()
                    return PdfText(text, truncated, error)
            except Exception as exc:  # noqa: BLE001 - a crashed or confused worker
                # never fails the persist: drop it, report, start afresh next time.
                self._kill()
                return PdfText("", False, f"extractor failed: {type(exc).__name__}: {exc}")
            self._kill()
            return PdfText("", False, f"timeout: PDF extraction passed {timeout:g} s")

    def close(self) -> None:
        with self._lock:
            self._kill()

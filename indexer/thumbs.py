"""Thumbnails of images (Pillow) and PDF first pages (pdfium), made once and cached.

Why pdfium (pypdfium2) and not poppler: it is a wheel (no system package), and on this
machine it renders the first page of the fixtures' report in ~2-50 ms after a 0.2 s
import. It is not safe from crafted files, though: fixtures/slow_pdf.py keeps it busy
for ~12 s, and Pillow meets decompression bombs. So, like PDF text extraction
(indexer/pdf.py), every render runs in a worker process that is killed at a time bound
(indexer/killable.py) and capped in address space; the killed job leaves a negative
entry, so a bad file costs one bounded attempt, never one per request.

The cache is content-addressed (sha256 + size) under the data home, bounded in bytes
(least recently used files go first), and shared by every resource with the same bytes.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from . import killable

#: Largest edge of a thumbnail, per size name the web view asks for.
SIZES = {"small": 256, "large": 768}
#: Pillow refuses more pixels than this (its own default is ~89 M): a 16 k x 16 k image
#: decodes to 1 GiB of RGBA.
MAX_IMAGE_PIXELS = 40_000_000
#: Formats Pillow decodes here; SVG and other active types never get a raster.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                         "image/tiff", "image/x-icon", "image/vnd.microsoft.icon"})
PDF_TYPES = frozenset({"application/pdf"})
#: The worker's address-space cap: pdfium and Pillow allocate inside it or fail.
WORKER_MEMORY_BYTES = 1536 * 1024 * 1024


def thumbnail_kind(content_type: str | None) -> str | None:
    """"image", "pdf" or None (no thumbnail for this type)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in IMAGE_TYPES:
        return "image"
    if ctype in PDF_TYPES:
        return "pdf"
    return None


# -- inside the worker process -----------------------------------------------------------
def render_thumbnail(kind: str, src: str, dst: str, edge: int) -> None:
    """Write a WebP of at most ``edge`` px per side to ``dst``; raise on any failure."""
    import warnings

    from PIL import Image
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    # Past MAX_IMAGE_PIXELS Pillow only warns (it raises past twice that): both refuse.
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    if kind == "image":
        with Image.open(src) as im:
            im.draft("RGB", (edge, edge))        # JPEG: decode at a fraction of the size
            im.seek(0)
            im.thumbnail((edge, edge))
            out = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    elif kind == "pdf":
        import pypdfium2 as pdfium
        pdf = pdfium.PdfDocument(src)
        try:
            page = pdf[0]
            width, height = page.get_size()
            if width <= 0 or height <= 0:
                raise ValueError("page has no size")
            scale = min(edge / max(width, height), 4.0)
            out = page.render(scale=scale).to_pil()
            out.thumbnail((edge, edge))
        finally:
            pdf.close()
    else:
        raise ValueError(f"no thumbnail for {kind!r}")
    out.save(dst, "WEBP", quality=80, method=4)


def _answer(job: tuple[str, str, str, int]) -> str | None:
    kind, src, dst, edge = job
    try:
        render_thumbnail(kind, src, dst, edge)
        return None
    except BaseException as exc:  # noqa: BLE001 - bombs, MemoryError, pdfium errors
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return f"{type(exc).__name__}: {exc}"[:300]


def _worker(conn: Connection) -> None:
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass                               # not on this platform: the time bound stays
    import PIL.Image  # noqa: F401 - imported before "ready", so no job pays for it
    import pypdfium2  # noqa: F401
    killable.serve_jobs(conn, _answer)


class _Worker:
    """One long-lived worker process, restarted after a kill."""

    def __init__(self) -> None:
        self._worker = killable.KillableWorker(_worker, "thumbnails", "thumbnail worker")

    def kill(self) -> None:
        self._worker.kill()

    def render(self, kind: str, src: Path, dst: Path, edge: int, timeout: float
               ) -> tuple[bool, str | None]:
        """(done, error): done=False means "could not try" (do not remember it)."""
        try:
            return True, self._worker.call((kind, str(src), str(dst), edge), timeout,
                                           crash_errors=(EOFError, OSError))
        except killable.Unavailable as exc:
            return False, f"worker unavailable: {exc}"
        except killable.Crashed as exc:       # died mid-job (memory cap, crash)
            return True, f"worker died: {type(exc.__cause__).__name__}"
        except killable.TimedOut:
            return True, f"timeout: rendering passed {timeout:g} s"


@dataclass
class Thumb:
    """A cached thumbnail (``path``) or the remembered reason there is none."""
    path: Path | None
    error: str | None
    #: "hit" / "made": cached / just rendered; "failed" / "none": refused just now / before
    #: (remembered, never tried again); "busy": not tried (worker held or unavailable).
    state: str


class Thumbnailer:
    """get() answers from the cache or renders once; never twice for the same bytes."""

    def __init__(self, cache_dir: Path, max_cache_bytes: int = 256 * 1024 * 1024,
                 timeout: float = 3.0, max_source_bytes: int = 64 * 1024 * 1024,
                 wait: float = 10.0) -> None:
        self.dir = cache_dir
        self.max_cache_bytes = max_cache_bytes
        self.timeout = timeout
        self.max_source_bytes = max_source_bytes
        #: How long a request waits for the worker another render holds, then gives up
        #: without remembering anything (a later request tries again).
        self.wait = wait
        self._lock = threading.Lock()
        self._worker = _Worker()
        self._size: int | None = None

    def _paths(self, sha256: str, size: str) -> tuple[Path, Path]:
        if size not in SIZES or not sha256.isalnum():
            raise ValueError("unknown thumbnail size or key")
        base = self.dir / sha256[:2] / f"{sha256}-{size}"
        return base.with_suffix(".webp"), base.with_suffix(".none")

    def cached(self, sha256: str, size: str) -> Thumb | None:
        path, none = self._paths(sha256, size)
        if path.exists():
            try:
                os.utime(path)              # least recently used goes first
            except OSError:
                pass
            return Thumb(path, None, "hit")
        if none.exists():
            return Thumb(None, none.read_text(errors="replace")[:300] or "no thumbnail", "none")
        return None

    def get(self, sha256: str, size: str, kind: str | None, source_size: int,
            fetch: Callable[[Path], None]) -> Thumb:
        """The thumbnail of the bytes ``fetch(path)`` writes (called only on a miss)."""
        found = self.cached(sha256, size)
        if found is not None:
            return found
        path, none = self._paths(sha256, size)
        if kind is None:
            return Thumb(None, "no thumbnail for this type", "none")
        if source_size > self.max_source_bytes:
            return self._remember_none(none, f"larger than {self.max_source_bytes} bytes")
        if not self._lock.acquire(timeout=self.wait):
            return Thumb(None, "busy: try again", "busy")
        try:
            found = self.cached(sha256, size)     # made while this request waited
            if found is not None:
                return found
            path.parent.mkdir(parents=True, exist_ok=True)
            src = path.parent / f".src-{os.getpid()}-{threading.get_ident()}"
            tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}.webp"
            try:
                fetch(src)
                done, error = self._worker.render(kind, src, tmp, SIZES[size], self.timeout)
                if not done:
                    return Thumb(None, error, "busy")
                if error is not None or not tmp.exists():
                    return self._remember_none(none, error or "renderer wrote nothing")
                os.replace(tmp, path)
                self._account(path.stat().st_size)
                return Thumb(path, None, "made")
            finally:
                for leftover in (src, tmp):
                    leftover.unlink(missing_ok=True)
        finally:
            self._lock.release()

    @staticmethod
    def _remember_none(none: Path, error: str) -> Thumb:
        none.parent.mkdir(parents=True, exist_ok=True)
        none.write_text(error)
        return Thumb(None, error, "failed")

    def _account(self, added: int) -> None:
        """Keep the cache under its bound: drop least recently used thumbnails."""
        if self._size is None:
            self._size = sum(p.stat().st_size for p in self.dir.rglob("*.webp"))
        else:
            self._size += added
        if self._size <= self.max_cache_bytes:
            return
        files = sorted(((p.stat().st_mtime, p) for p in self.dir.rglob("*.webp")),
                       key=lambda t: t[0])
        total = sum(p.stat().st_size for _, p in files)
        target = int(self.max_cache_bytes * 0.9)
        for _, p in files:
            if total <= target:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
        self._size = total

    def close(self) -> None:
        with self._lock:
            self._worker.kill()

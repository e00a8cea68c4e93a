"""What both blob writers (local.py, s3.py) do with each streamed chunk: count it
against the tier limit, and gather small chunks into large blocks (an HTTP body arrives
in ~64 KiB pieces; a write, a hash call or an S3 part per piece would be slow)."""
from __future__ import annotations

from typing import Any, Callable

from .errors import TooLarge


def admit(writer: Any, chunk: bytes) -> None:
    """Count ``chunk`` into ``writer.size``, or abort the writer and raise TooLarge when
    it would pass ``writer.max_bytes`` (nothing is kept)."""
    if writer.size + len(chunk) > writer.max_bytes:
        writer.abort()
        raise TooLarge(
            f"body exceeds the tier limit of {writer.max_bytes:,} bytes; nothing was kept",
            limit=writer.max_bytes)
    writer.size += len(chunk)


class BlockBuffer:
    """Hands ``emit`` blocks of at least ``block`` bytes (the last one, at ``flush``,
    may be smaller); ``pending`` holds what is gathered and not yet emitted.

    ``keeps=False``: ``emit`` uses the data during the call only (a file write): it gets
    a view of the buffer, and a chunk of a block or more, with nothing gathered, goes
    to it as is. ``keeps=True``: ``emit`` keeps the data (an upload in flight): it gets a
    copy of its own, always gathered."""

    def __init__(self, block: int, emit: Callable[[Any], None], keeps: bool = False) -> None:
        self.block, self.emit, self.keeps = block, emit, keeps
        self.pending = bytearray()

    def add(self, chunk: bytes) -> None:
        if not self.keeps and not self.pending and len(chunk) >= self.block:
            self.emit(chunk)
            return
        self.pending += chunk
        if len(self.pending) >= self.block:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.keeps:
            self.emit(bytes(self.pending))
            self.pending = bytearray()
        else:
            with memoryview(self.pending) as view:
                self.emit(view)
            self.pending.clear()

    def clear(self) -> None:
        self.pending = bytearray()

"""The storage backend interface: a few primitives every backend implements.

A write is staged, then published: ``open_write`` streams into a staging area while
hashing, ``finish`` makes the staged bytes durable, ``publish`` puts them at their key
atomically. The pipeline records its intent between the two (crash safety), and the
indexer reads the staged bytes before they become visible.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class BlobStat:
    key: str
    size: int
    mtime: float


class BlobWriter(abc.ABC):
    #: Where the staged bytes sit until published (a path the recovery can check).
    staging_ref: str
    max_bytes: int
    size: int
    sha256: str

    @abc.abstractmethod
    def write(self, chunk: bytes) -> None:
        """Append bytes; raises TooLarge as soon as the limit is passed (and aborts)."""

    @abc.abstractmethod
    def finish(self, durable: bool = True) -> None:
        """Size and sha256 are final afterwards; ``durable`` makes the staged bytes
        durable now (the bulk path passes False and calls ``sync_barrier`` once)."""

    @abc.abstractmethod
    def read_staged(self, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of the staged bytes (for extraction)."""

    @abc.abstractmethod
    def staged_path(self) -> str | None:
        """A local file path of the staged bytes, when the backend has one."""

    @abc.abstractmethod
    def publish(self, durable: bool = True) -> None:
        """Atomically move the staged bytes to the key (replacing what was there)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the staged bytes; safe to call more than once."""


class StorageBackend(abc.ABC):
    family: str

    @abc.abstractmethod
    def open_write(self, key: str, max_bytes: int) -> BlobWriter: ...

    def check_target(self, key: str) -> None:
        """Raise a typed error (Conflict, InvalidPath) when a blob could not be published
        at ``key``; called before any intent is written. Backends with a flat key space
        accept every valid key."""

    @abc.abstractmethod
    def open_read(self, key: str, start: int = 0, end: int | None = None,
                  chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Bytes ``start..end`` (inclusive end, like HTTP Range); FileNotFoundError if absent."""

    @abc.abstractmethod
    def stat(self, key: str) -> BlobStat:
        """FileNotFoundError if absent."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """True if something was removed."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[BlobStat]: ...

    @abc.abstractmethod
    def sync_barrier(self) -> None:
        """Make every finished and published write durable (bulk path)."""

    @abc.abstractmethod
    def staging_exists(self, staging_ref: str) -> bool: ...

    @abc.abstractmethod
    def discard_staging(self, staging_ref: str) -> None: ...

    @abc.abstractmethod
    def list_staging(self) -> Iterator[tuple[str, float]]:
        """Leftover staged writes, with their mtimes (for recovery and doctor)."""

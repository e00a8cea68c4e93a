"""The storage backend interface: a few primitives every backend implements.

A write is staged, then published: ``open_write`` streams into a staging area while
hashing, ``finish`` makes the staged bytes durable, ``publish`` puts them at their key
atomically. The pipeline records its intent between the two (crash safety), and the
indexer reads the staged bytes before they become visible.

Primitives every backend implements: put a stream (``open_write``), get a range
(``open_read``), ``stat``, ``delete``, flat ``list``, and the staging bookkeeping that
recovery needs. Optional abilities are *declared* as class attributes (``can_adopt``,
``local_paths``), never probed with ``hasattr``: a backend states what it does.
``local_copy`` is derived from the primitives for code that needs a real file.
"""
from __future__ import annotations

import abc
import contextlib
import os
import tempfile
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class BlobStat:
    key: str
    size: int
    mtime: float
    #: The object store's entity tag, where the backend has one (S3); else None.
    etag: str | None = None


class BlobWriter(abc.ABC):
    #: Where the staged bytes sit until published (a path the recovery can check).
    staging_ref: str
    #: Several ``publish(durable=False)`` into one folder are made durable together by
    #: one ``sync_folder()`` (local files); otherwise each publish is durable itself.
    folder_barrier: bool = False
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

    def folder_ref(self) -> str:
        """The folder ``sync_folder`` makes durable (writers with ``folder_barrier``)."""
        raise NotImplementedError

    def sync_folder(self) -> None:
        raise NotImplementedError


class StorageBackend(abc.ABC):
    #: The ``storage-backend`` value of records on this backend (platform, s3).
    family: str
    #: ``adopt(key, max_bytes)`` registers bytes another program put at a key (watch).
    can_adopt: bool = False
    #: ``path_for(key)`` is a real local file path of a blob.
    local_paths: bool = False
    #: ``publish`` succeeds only if the key still holds what it held when the write
    #: began (else VersionConflict); without it the last publisher wins.
    conditional_publish: bool = False
    #: ``presigned_get`` hands out a short-lived URL the client fetches directly.
    can_presign: bool = False

    def presigned_get(self, key: str, ttl: int, filename: str | None = None,
                      content_type: str | None = None) -> str:
        raise NotImplementedError(f"the {self.family} backend has no presigned URLs")

    def adopt(self, key: str, max_bytes: int) -> BlobWriter:
        raise NotImplementedError(f"the {self.family} backend cannot adopt files")

    def ready(self) -> None:
        """Raise when the backend cannot serve now (readiness probe). The default asks
        for a key that does not exist: reachable means FileNotFoundError."""
        try:
            self.stat("_readyz/probe")
        except FileNotFoundError:
            pass

    def describe(self) -> str:
        """Where the blobs are, for messages and doctor (never with credentials)."""
        return self.family

    def holds(self, staging_ref: str, key: str) -> bool:
        """Recovery's question after a crash between intent and record: does ``key``
        hold what the staged write ``staging_ref`` would have published? A backend
        whose publish is a rename can only tell that something is there."""
        try:
            self.stat(key)
            return True
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def local_copy(self, key: str, max_bytes: int | None = None) -> Iterator[str]:
        """A local file with the blob's bytes (at most ``max_bytes``) for code that
        needs a real file (PDF extraction). The file is removed afterwards."""
        end = None if max_bytes is None else max_bytes - 1
        fd, path = tempfile.mkstemp(prefix="blob-", suffix=".copy")
        try:
            with os.fdopen(fd, "wb") as fh:
                if end is None or end >= 0:
                    for chunk in self.open_read(key, 0, end):
                        fh.write(chunk)
            yield path
        finally:
            os.unlink(path)

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

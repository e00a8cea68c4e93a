"""The `platform` backend: blobs as plain files under the data home.

Writes go to ``<home>/tmp`` (same filesystem, so the final rename is atomic), are
hashed while streaming, fsynced, then renamed into place. Memory stays flat: one chunk
at a time. Keys are resolved and checked so that nothing escapes the root.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from .backend import BlobStat, BlobWriter, StorageBackend
from .blockwrite import BlockBuffer, admit
from .errors import Conflict, InvalidPath, TooLarge, Unavailable, from_os_error

STAGING_SUFFIX = ".part"
BLOCK = 1024 * 1024
#: Longest absolute path the kernel takes (PATH_MAX includes the final NUL).
_PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
_HASHERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sha256")

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    _libc.syncfs.argtypes = [ctypes.c_int]
except (OSError, AttributeError):
    _libc = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_regular(path: Path):
    """Open a regular file for reading without following a final symlink; anything
    else at the path (a link, a folder, a fifo) is reported as absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno in (
                errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR):
            raise FileNotFoundError(f"no regular file at {path}") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(f"no regular file at {path}")
    return os.fdopen(fd, "rb")


class LocalWriter(BlobWriter):
    folder_barrier = True

    def __init__(self, backend: "LocalBackend", key: str, max_bytes: int) -> None:
        self.backend = backend
        self.key = key
        self.max_bytes = max_bytes
        self.target = backend.path_for(key)
        self.tmp = backend.tmp_dir / f"{uuid.uuid4().hex}{STAGING_SUFFIX}"
        self.staging_ref = str(self.tmp)
        self._fh = open(self.tmp, "wb")
        # The lock says "a live writer owns this file": recovery removes only staged
        # files whose owner died (the kernel drops the lock with the process).
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._hash = hashlib.sha256()
        self._blocks = BlockBuffer(BLOCK, self._write_block)
        self.size = 0
        self.sha256 = ""
        self._done = False

    def write(self, chunk: bytes) -> None:
        admit(self, chunk)
        try:
            # Small chunks are gathered into blocks: one write and one hash call per
            # block, not per piece.
            self._blocks.add(chunk)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """A refused write (disk full above all) drops the staged file and says why."""
        self.abort()
        typed = from_os_error(exc, self.key)
        if typed is None:
            raise exc
        raise typed from exc

    def _write_block(self, data: bytes | memoryview) -> None:
        if len(data) >= BLOCK:
            # Hash on a helper thread while this one writes: both release the GIL, so
            # a large persist runs at the speed of the slower of the two, not their sum.
            done = _HASHERS.submit(self._hash.update, data)
            try:
                self._fh.write(data)
            finally:
                # Wait even when the write fails: the hasher still holds a view of the
                # buffer, and clearing it under that view is a BufferError.
                done.result()
        else:
            self._hash.update(data)
            self._fh.write(data)

    def finish(self, durable: bool = True) -> None:
        # The handle (and its lock) stays open until publish or abort, so no recovery in
        # another process takes this staged file for abandoned in between.
        try:
            self._blocks.flush()
            self._fh.flush()
            if durable:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            self._fail(exc)
        self.sha256 = self._hash.hexdigest()

    def read_staged(self, max_bytes: int) -> bytes:
        with open(self.tmp, "rb") as fh:
            return fh.read(max_bytes)

    def staged_path(self) -> str | None:
        return str(self.tmp)

    def publish(self, durable: bool = True) -> None:
        # A concurrent delete may tidy away an empty folder between mkdir and replace.
        for attempt in range(5):
            self.target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(self.tmp, self.target)
                break
            except FileNotFoundError:
                if attempt == 4 or not self.tmp.exists():
                    raise
        if durable:
            _fsync_dir(self.target.parent)
        self._done = True
        self._fh.close()

    # Group commit (storage.lifecycle): several publish(durable=False) into one folder,
    # then one fsync of that folder makes all their renames durable.
    def folder_ref(self) -> str:
        return str(self.target.parent)

    def sync_folder(self) -> None:
        # The folder holds the renamed entry; its parent holds the folder, which an
        # unslotted persist has just created (<step>/<uuid>/).
        _fsync_dir(self.target.parent)
        _fsync_dir(self.target.parent.parent)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class AdoptWriter(BlobWriter):
    """A file another program put at its key, taken as it is: hashed where it lies,
    never copied, moved or removed (publish and abort do nothing)."""

    def __init__(self, backend: "LocalBackend", key: str, max_bytes: int) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.target = backend.path_for(key)
        self.staging_ref = ""          # nothing staged: recovery rolls such an intent forward
        # Never adopt through a symlink: a link in a slot folder could point at the
        # catalog, the secret or another workspace's blob.
        fh = _open_regular(self.target)
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            fh.close()
            raise TooLarge(f"{key} is {size:,} bytes, over the tier limit of {max_bytes:,}")
        digest = hashlib.sha256()
        self.size = 0
        with fh:
            while block := fh.read(BLOCK):
                digest.update(block)
                self.size += len(block)
        self.sha256 = digest.hexdigest()

    def write(self, chunk: bytes) -> None:
        raise TypeError("an adopted file takes no bytes")

    def finish(self, durable: bool = True) -> None:
        pass

    def read_staged(self, max_bytes: int) -> bytes:
        with _open_regular(self.target) as fh:
            return fh.read(max_bytes)

    def staged_path(self) -> str | None:
        return str(self.target)

    def publish(self, durable: bool = True) -> None:
        pass

    def abort(self) -> None:
        pass


class LocalBackend(StorageBackend):
    family = "platform"
    can_adopt = True
    local_paths = True

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root.resolve()
        self.tmp_dir = tmp_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)


    def ready(self) -> None:
        for folder in (self.root, self.tmp_dir):
            if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
                raise Unavailable("a storage folder is missing or not writable")
    def path_for(self, key: str) -> Path:
        # Keys are validated by the layout already; this is the last line of defence:
        # nothing below the root is ever reached through a symbolic link (a link in a
        # slot folder could point at the catalog, the secret or another workspace).
        if key.startswith("/") or "\\" in key or "\x00" in key or \
                any(seg in ("", ".", "..") for seg in key.split("/")):
            raise InvalidPath(f"invalid storage key {key!r}")
        path = (self.root / key)
        if os.path.realpath(path) != str(path):
            if not Path(os.path.realpath(path)).is_relative_to(self.root):
                raise InvalidPath(f"storage key {key!r} escapes the storage root")
            raise InvalidPath(f"storage key {key!r} goes through a symbolic link")
        return path

    def check_target(self, key: str) -> None:
        """Refuse, before any intent exists, a key the filesystem would refuse at
        publish: a file where one of its folders must go, a folder (or a symlink) at
        the key itself, or a path past the OS limits. Publish still translates the
        refusal if a concurrent writer creates the collision in between."""
        path = self.path_for(key)
        if len(os.fsencode(path)) >= _PATH_MAX:
            raise InvalidPath(f"the storage path of {key!r} is longer than the filesystem "
                              f"allows ({_PATH_MAX - 1} bytes); shorten flow, step, path "
                              f"or filename")
        probe = self.root
        parts = key.split("/")
        for i, part in enumerate(parts):
            probe = probe / part
            try:
                st = os.lstat(probe)
            except FileNotFoundError:
                return                    # nothing below a missing folder can collide
            except OSError as exc:
                raise from_os_error(exc, key) or exc
            last = i == len(parts) - 1
            if stat.S_ISLNK(st.st_mode):
                raise InvalidPath(f"{'/'.join(parts[:i + 1])} is a symbolic link; "
                                  f"resources are never written through links")
            if last and stat.S_ISDIR(st.st_mode):
                raise Conflict(f"a folder already lives at {key}; a file cannot replace it")
            if not last and not stat.S_ISDIR(st.st_mode):
                raise Conflict(f"a file already lives at {'/'.join(parts[:i + 1])}, where "
                               f"a folder of {key} must go")

    def open_write(self, key: str, max_bytes: int) -> LocalWriter:
        return LocalWriter(self, key, max_bytes)

    def adopt(self, key: str, max_bytes: int) -> AdoptWriter:
        """Take the file already at ``key`` as the blob (watch: files other programs
        wrote into a slot folder). FileNotFoundError if it is gone."""
        return AdoptWriter(self, key, max_bytes)

    @contextlib.contextmanager
    def local_copy(self, key: str, max_bytes: int | None = None) -> Iterator[str]:
        """The blob's own file: nothing to copy on local disk."""
        path = self.path_for(key)
        if not path.exists():
            raise FileNotFoundError(key)
        yield str(path)

    def open_read(self, key: str, start: int = 0, end: int | None = None,
                  chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        fh = _open_regular(self.path_for(key))    # raises FileNotFoundError up front

        def gen() -> Iterator[bytes]:
            with fh:
                fh.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    n = chunk_size if remaining is None else min(chunk_size, remaining)
                    chunk = fh.read(n)
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
        return gen()

    def stat(self, key: str) -> BlobStat:
        """The blob at ``key``: a regular file, never a folder or a symlink (recovery
        must not take a folder that collided with a refused write for its blob)."""
        try:
            st = os.lstat(self.path_for(key))
        except (NotADirectoryError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in (
                    errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
                raise FileNotFoundError(f"no blob at {key}") from exc
            raise
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(f"no regular file at {key}")
        return BlobStat(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> bool:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # Tidy empty folders up to the workspace, so a deleted run leaves no husk.
        parent = path.parent
        while parent != self.root and parent.parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def list(self, prefix: str) -> Iterator[BlobStat]:
        """Regular files below ``prefix``; symbolic links (to files or folders) are
        neither listed nor followed, so doctor and watch never adopt or move them."""
        base = self.root / prefix if prefix else self.root
        if not base.exists() or base.is_symlink():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield BlobStat(rel, st.st_size, st.st_mtime)

    def sync_barrier(self) -> None:
        """Make every write so far durable with one syncfs(2) of the data home's
        filesystem: the bulk path's replacement for one fsync per file and folder."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc is not None and _libc.syncfs(fd) == 0:
                return
            os.sync()
        finally:
            os.close(fd)

    def staging_exists(self, staging_ref: str) -> bool:
        return bool(staging_ref) and Path(staging_ref).exists()

    def discard_staging(self, staging_ref: str) -> None:
        p = Path(staging_ref)
        if p.parent.resolve() == self.tmp_dir.resolve():
            p.unlink(missing_ok=True)

    def list_staging(self) -> Iterator[tuple[str, float]]:
        """Staged files whose writer is gone (their lock is free)."""
        for p in sorted(self.tmp_dir.glob(f"*{STAGING_SUFFIX}")):
            try:
                with open(p, "rb") as fh:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue          # a live writer owns it
                    yield str(p), os.fstat(fh.fileno()).st_mtime
            except FileNotFoundError:
                continue

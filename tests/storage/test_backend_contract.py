"""The backend contract: every storage backend passes these same tests.

Adding a backend is one module in storage/ and one line in BACKENDS below. The S3
backend runs against a real SeaweedFS (tests/s3_server.py), a fresh key prefix per test.
"""
from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Callable

import pytest

from storage.backend import StorageBackend
from storage.errors import TooLarge, VersionConflict
from storage.local import LocalBackend
from storage.s3 import S3Backend, S3Config

MiB = 1024 * 1024
PART = 5 * MiB          # the S3 minimum, so a few MiB already make a multipart upload


def make_local(request, tmp_path: Path) -> StorageBackend:
    return LocalBackend(tmp_path / "home", tmp_path / "home" / "tmp")


def make_s3(request, tmp_path: Path) -> StorageBackend:
    server = request.getfixturevalue("seaweedfs")
    cfg = S3Config(name="s3", bucket=server.bucket, endpoint=server.endpoint,
                   region="us-east-1", prefix=f"contract/{uuid.uuid4().hex}",
                   addressing="path", part_size=PART, parts_in_flight=2)
    return S3Backend(cfg, tmp_path / "s3tmp", spool_max=1 * MiB, pdf_spool_max=2 * MiB)


BACKENDS: dict[str, Callable[..., StorageBackend]] = {
    "local": make_local,
    "s3": make_s3,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path: Path) -> StorageBackend:
    return BACKENDS[request.param](request, tmp_path)


def put(backend: StorageBackend, key: str, data: bytes, max_bytes: int = 1 << 40,
        chunk: int = 256 * 1024):
    w = backend.open_write(key, max_bytes)
    for i in range(0, len(data), chunk):
        w.write(data[i:i + chunk])
    w.finish()
    w.publish()
    return w


def read(backend: StorageBackend, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(backend.open_read(key, start, end))


def leftovers(backend: StorageBackend) -> list[str]:
    return [ref for ref, _ in backend.list_staging()]


def test_small_write_round_trip(backend: StorageBackend) -> None:
    data = b"hello, contract\n" * 100
    w = put(backend, "workspaces/ws/storage/r/a.txt", data)
    assert w.size == len(data)
    assert w.sha256 == hashlib.sha256(data).hexdigest()
    assert read(backend, "workspaces/ws/storage/r/a.txt") == data
    st = backend.stat("workspaces/ws/storage/r/a.txt")
    assert (st.key, st.size) == ("workspaces/ws/storage/r/a.txt", len(data))


def test_empty_body(backend: StorageBackend) -> None:
    w = put(backend, "k/empty", b"")
    assert (w.size, w.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert backend.stat("k/empty").size == 0
    assert read(backend, "k/empty") == b""


def test_multipart_stream_hash_and_ranges_across_parts(backend: StorageBackend) -> None:
    data = os.urandom(3 * PART + 12345)        # several parts plus a short last one
    w = put(backend, "k/big.bin", data, chunk=64 * 1024 + 7)
    assert w.sha256 == hashlib.sha256(data).hexdigest()
    assert backend.stat("k/big.bin").size == len(data)
    assert hashlib.sha256(read(backend, "k/big.bin")).hexdigest() == w.sha256
    for start, end in ((0, 0), (PART - 3, PART + 3), (2 * PART, None),
                       (len(data) - 1, len(data) - 1), (10, 10 + 999)):
        want = data[start:] if end is None else data[start:end + 1]
        assert read(backend, "k/big.bin", start, end) == want
    chunks = list(backend.open_read("k/big.bin", 0, 100_000, chunk_size=4096))
    assert max(len(c) for c in chunks) <= 4096 and b"".join(chunks) == data[:100_001]


def test_staged_bytes_are_invisible_until_published(backend: StorageBackend) -> None:
    data = os.urandom(PART + 10)
    w = backend.open_write("k/staged", 1 << 30)
    w.write(data)
    w.finish()
    with pytest.raises(FileNotFoundError):
        backend.stat("k/staged")
    # Extraction reads the staged head locally, before publishing.
    assert w.read_staged(100) == data[:100]
    with open(w.staged_path(), "rb") as fh:
        assert fh.read(1000) == data[:1000]
    w.publish()
    assert backend.stat("k/staged").size == len(data)


def test_missing_key(backend: StorageBackend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.stat("k/nothing")
    with pytest.raises(FileNotFoundError):
        backend.open_read("k/nothing")
    assert backend.delete("k/nothing") is False


def test_delete(backend: StorageBackend) -> None:
    put(backend, "workspaces/ws/storage/r/gone.txt", b"x")
    assert backend.delete("workspaces/ws/storage/r/gone.txt") is True
    with pytest.raises(FileNotFoundError):
        backend.stat("workspaces/ws/storage/r/gone.txt")
    assert backend.delete("workspaces/ws/storage/r/gone.txt") is False


def test_flat_listing_is_right_after_deletes(backend: StorageBackend) -> None:
    for key in ("d/a/1", "d/a/2", "d/b/3", "d/c", "dx/4"):
        put(backend, key, key.encode())
    backend.delete("d/a/1")
    backend.delete("d/a/2")
    listed = {(b.key, b.size) for b in backend.list("d")}
    assert listed == {("d/b/3", 5), ("d/c", 3)}        # no "d/a" husk, no "dx/"
    assert {b.key for b in backend.list("")} >= {"d/b/3", "d/c", "dx/4"}


def test_tier_limit_mid_stream_keeps_nothing(backend: StorageBackend) -> None:
    w = backend.open_write("k/too-big", 3 * PART)
    with pytest.raises(TooLarge):
        for _ in range(4 * PART // MiB):
            w.write(os.urandom(MiB))     # parts are uploaded before the limit is hit
    with pytest.raises(FileNotFoundError):
        backend.stat("k/too-big")
    assert leftovers(backend) == []
    if isinstance(backend, S3Backend):      # the bucket itself: no orphan upload
        ups = backend.client.list_multipart_uploads(Bucket=backend.bucket,
                                                    Prefix=backend.prefix)
        assert ups.get("Uploads", []) == []


def test_abort_leaves_nothing(backend: StorageBackend) -> None:
    w = backend.open_write("k/aborted", 1 << 30)
    w.write(os.urandom(2 * PART))
    w.abort()
    w.abort()                                # idempotent
    with pytest.raises(FileNotFoundError):
        backend.stat("k/aborted")
    assert leftovers(backend) == []


def test_rewrite_replaces(backend: StorageBackend) -> None:
    put(backend, "k/doc", b"version one")
    put(backend, "k/doc", b"version two, longer")
    assert read(backend, "k/doc") == b"version two, longer"


def test_concurrent_rewrite(backend: StorageBackend) -> None:
    """Two writers that began on the same version: with conditional publishing the
    second loses (and keeps nothing); otherwise the last one wins."""
    put(backend, "k/raced", b"v1")
    a = backend.open_write("k/raced", 1 << 20)
    b = backend.open_write("k/raced", 1 << 20)
    for w, body in ((a, b"from a"), (b, b"from b")):
        w.write(body)
        w.finish()
    a.publish()
    if backend.conditional_publish:
        with pytest.raises(VersionConflict):
            b.publish()
        b.abort()
        assert read(backend, "k/raced") == b"from a"
        assert backend.holds(a.staging_ref, "k/raced")
        assert not backend.holds(b.staging_ref, "k/raced")
    else:
        b.publish()
        assert read(backend, "k/raced") == b"from b"
    assert leftovers(backend) == []


def test_racing_new_key_has_one_winner(backend: StorageBackend) -> None:
    writers = [backend.open_write("k/new", 1 << 20) for _ in range(6)]
    for i, w in enumerate(writers):
        w.write(f"writer {i}".encode())
        w.finish()
    outcomes: list[str] = []

    def go(w) -> None:
        try:
            w.publish()
            outcomes.append("won")
        except VersionConflict:
            w.abort()
            outcomes.append("lost")
    threads = [threading.Thread(target=go, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if backend.conditional_publish:
        assert sorted(outcomes) == ["lost"] * 5 + ["won"]
    else:
        # Publish by rename: every writer succeeds and the key holds exactly one of
        # them whole (the commit lock above the backend orders real persists).
        assert outcomes == ["won"] * 6
        assert read(backend, "k/new") in {f"writer {i}".encode() for i in range(6)}


def test_local_copy(backend: StorageBackend) -> None:
    data = os.urandom(300_000)
    put(backend, "k/copy", data)
    with backend.local_copy("k/copy") as path:
        assert Path(path).read_bytes() == data
    with backend.local_copy("k/copy", max_bytes=1000) as path:
        assert Path(path).read_bytes()[:1000] == data[:1000]
    with pytest.raises(FileNotFoundError):
        with backend.local_copy("k/none"):
            pass


def test_invalid_keys_are_refused(backend: StorageBackend) -> None:
    from storage.errors import InvalidPath
    for key in ("/abs", "a/../b", "a//b", "a\\b"):
        with pytest.raises(InvalidPath):
            backend.open_write(key, 10)

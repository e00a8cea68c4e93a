"""Streaming persists on a quiet server of their own: the tier limit (413, nothing kept)
and flat server memory while tens of MiB go through."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from server import error_body, ok_body, start_server, stop_server, upload

WS = "/v1/ws-acme"
MiB = 1024 * 1024
RETAINED_MAX = 52_428_800
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("stream-server"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def c(quiet):
    with quiet.client("admin", timeout=120) as client:
        # warm up: the first persist imports the extractors; measure memory after it
        ok_body(upload(client, b"warm up text\n" * 1000, {"filename": "warm.txt"}), 201)
        yield client


class RssSampler:
    """Samples the server's VmRSS every few ms in a thread: before, peak, after (KiB)."""

    def __init__(self, server) -> None:
        self.server = server
        self.before = server.rss_kb()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_kb())
            except (OSError, ValueError):
                return
            time.sleep(0.005)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.server.rss_kb()
        self.peak = max(self.peak, self.after)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 1000


def body_chunks(total: int, seed: int = 1, digest: "hashlib._Hash | None" = None):
    """A generator body (httpx sends it chunked: no Content-Length)."""
    block = bytes((seed + i) % 251 for i in range(CHUNK))
    sent = 0
    while sent < total:
        chunk = block[: min(CHUNK, total - sent)]
        if digest is not None:
            digest.update(chunk)
        sent += len(chunk)
        yield chunk


def staged(server) -> list[Path]:
    return [p for p in (server.home / "tmp").iterdir() if p.is_file()]


def listing(c) -> list[str]:
    env = ok_body(c.get(f"{WS}/resources", params={"limit": 100}))
    return [i["uri"] for i in env["data"]["items"]]


def test_60_mib_streamed_to_retained_is_413_and_nothing_is_kept(quiet, c):
    before_list = listing(c)
    before_files = {p for p in quiet.home.rglob("*") if p.is_file()}
    with RssSampler(quiet) as rss:
        r = c.post(f"{WS}/resources", content=body_chunks(60 * MiB),
                   headers={"X-Persist-Spec": '{"filename": "huge.bin", "tier": "retained"}'})
    assert "content-length" not in r.request.headers
    assert r.request.headers.get("transfer-encoding") == "chunked"
    err = error_body(r, 413, "too_large")
    assert f"{RETAINED_MAX:,}" in err["message"]
    assert staged(quiet) == []
    assert listing(c) == before_list
    after_files = {p for p in quiet.home.rglob("*") if p.is_file()}
    new = {p for p in after_files - before_files
           if not p.name.endswith(("-wal", "-shm", ".lock")) and "index" not in p.parts}
    assert not new, new
    assert not list((quiet.home / "workspaces").rglob("huge.bin"))
    assert rss.growth_mb < 30, f"server RSS grew {rss.growth_mb:.1f} MB (peak) for a 60 MiB body"
    # the server is fine afterwards
    ok_body(c.get("/healthz"))


def test_declared_length_over_limit_is_413_before_the_body(quiet, c):
    before_list = listing(c)
    with RssSampler(quiet) as rss:
        r = c.post(f"{WS}/resources", content=body_chunks(55 * MiB),
                   headers={"X-Persist-Spec": '{"filename": "declared.bin"}',
                            "Content-Length": str(55 * MiB)})
    error_body(r, 413, "too_large")
    assert staged(quiet) == [] and listing(c) == before_list
    assert rss.growth_mb < 30


def test_one_byte_over_the_limit_streamed_is_413(quiet, c):
    before_list = listing(c)
    r = c.post(f"{WS}/resources", content=body_chunks(RETAINED_MAX + 1),
               headers={"X-Persist-Spec": '{"filename": "plus1.bin"}'})
    error_body(r, 413, "too_large")
    assert staged(quiet) == [] and listing(c) == before_list


def test_exactly_the_limit_streamed_is_kept_with_flat_memory(quiet, c):
    digest = hashlib.sha256()
    with RssSampler(quiet) as rss:
        r = c.post(f"{WS}/resources", content=body_chunks(RETAINED_MAX, 3, digest),
                   headers={"X-Persist-Spec": '{"filename": "exact.bin", "workflow-id": "wf-big"}'})
    rec = ok_body(r, 201)["data"]
    assert rec["size"] == RETAINED_MAX and rec["sha256"] == digest.hexdigest()
    assert (quiet.home / rec["path"]).stat().st_size == RETAINED_MAX
    assert staged(quiet) == []
    assert rss.growth_mb < 30, f"server RSS grew {rss.growth_mb:.1f} MB"
    # reading it back streams too
    got = hashlib.sha256()
    with RssSampler(quiet) as rss:
        with c.stream("GET", f"{WS}/resources/content", params={"uri": rec["uri"]}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-length"] == str(RETAINED_MAX)
            for chunk in resp.iter_bytes():
                got.update(chunk)
    assert got.hexdigest() == rec["sha256"]
    assert rss.growth_mb < 30
    ok_body(c.delete(f"{WS}/workflows/wf-big/resources"))


def test_60_mib_streamed_to_ephemeral_is_accepted(quiet, c):
    digest = hashlib.sha256()
    r = c.post(f"{WS}/resources", content=body_chunks(60 * MiB, 5, digest),
               headers={"X-Persist-Spec": '{"filename": "eph.bin", "tier": "ephemeral"}'})
    rec = ok_body(r, 201)["data"]
    assert rec["tier"] == "ephemeral" and rec["size"] == 60 * MiB
    assert rec["sha256"] == digest.hexdigest()
    ok_body(c.delete(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}))
    assert not (quiet.home / rec["path"]).exists()


def test_client_that_goes_away_mid_upload_leaves_nothing(quiet, c):
    before_list = listing(c)

    def dying():
        yield from body_chunks(4 * MiB)
        raise RuntimeError("client gave up")

    with pytest.raises(RuntimeError):
        with httpx.Client(base_url=quiet.base, timeout=30,
                          headers={"Authorization": f"Bearer {quiet.keys['admin']}"}) as cl:
            cl.post(f"{WS}/resources", content=dying(),
                    headers={"X-Persist-Spec": '{"filename": "dying.bin"}'})
    deadline = time.monotonic() + 10
    while staged(quiet) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staged(quiet) == []
    assert listing(c) == before_list
    ok_body(c.get("/healthz"))

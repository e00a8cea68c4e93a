"""Issue 14, items 5 and 11: one anonymous connection must not stall everyone.

A request head over the cap is a 431 and costs no memory; a client that never finishes
its head is disconnected after the header timeout; many such clients do not slow
/healthz for the others."""
from __future__ import annotations

import socket
import time

import httpx
import pytest

from server import start_server, stop_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("limits"),
                          serve_args=("--max-header-bytes", "16384", "--header-timeout", "1"))
    yield server
    stop_server(server)


def test_oversized_header_is_431_and_memory_stays_flat(srv):
    rss_before = srv.rss_kb()
    for _ in range(5):
        r = httpx.get(f"{srv.base}/healthz", headers={"X-Big": "a" * 200_000}, timeout=10)
        assert r.status_code == 431
        assert r.json()["error"]["code"] == "header_too_large"
    # A normal request on a new connection is unaffected.
    assert httpx.get(f"{srv.base}/healthz", timeout=5).status_code == 200
    assert srv.rss_kb() - rss_before < 20_000


def test_a_growing_header_is_cut_off(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Grow: ")
        got = b""
        try:
            for _ in range(100):
                s.sendall(b"b" * 1024)
        except OSError:
            pass            # the server closed the connection on us: what we want
        try:
            got = s.recv(4096)
        except OSError:
            pass
        assert got == b"" or got.startswith(b"HTTP/1.1 431")


def test_partial_heads_are_dropped_and_do_not_stall_others(srv):
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")      # never finished
        socks.append(s)
    try:
        start = time.monotonic()
        assert httpx.get(f"{srv.base}/healthz", timeout=10).status_code == 200
        assert time.monotonic() - start < 5
        # After the header timeout (1 s) the server has hung up on every one of them.
        deadline = time.monotonic() + 10
        open_ = socks
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                s.settimeout(0.05)
                try:
                    if s.recv(1) != b"":
                        still.append(s)
                except socket.timeout:
                    still.append(s)
                except OSError:
                    pass
            open_ = still
        assert not open_, f"{len(open_)} partial connections still open"
    finally:
        for s in socks:
            s.close()


def test_idle_connection_without_any_bytes_is_dropped(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.settimeout(6)
        assert s.recv(1) == b""

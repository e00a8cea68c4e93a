"""PostgreSQL restarted under load (docs/scale-out.md "When PostgreSQL is unavailable"):
while it is down requests answer 503, nothing is half-applied, and the node reconnects
by itself once it is back.

A PostgreSQL of its own (not the session's): stopping the shared one would disturb the
other tests' catalogs.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pg_server import start_pg, wait_until
from server import KEY_SPECS, start_server, stop_server, upload

WS = "ws-acme"


@pytest.fixture
def own_pg():
    root = Path(tempfile.mkdtemp(prefix="resources-pg-outage-"))
    root.chmod(0o711)
    server = start_pg(root / "pg", durable=True)
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_restart_under_load_gives_503s_then_recovers(own_pg, tmp_path):
    node = start_server(tmp_path / "node", extra_env={"RESOURCES_CATALOG_URL": own_pg.url()},
                        keys={"admin": KEY_SPECS["admin"]})
    acked: dict[str, str] = {}                 # uri -> sha256 of what was acknowledged
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        with node.client(timeout=30.0) as c:
            while not stop.is_set():
                body = f"load {uuid.uuid4().hex}\n".encode()
                try:
                    r = upload(c, body)
                except httpx.TransportError:
                    statuses.append((time.monotonic(), -1))
                    continue
                statuses.append((time.monotonic(), r.status_code))
                if r.status_code == 201:
                    acked[r.json()["data"]["uri"]] = hashlib.sha256(body).hexdigest()
                elif r.status_code == 503:
                    assert r.json()["error"]["code"] == "unavailable"
                    time.sleep(0.2)

    threads = [threading.Thread(target=load) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(acked) >= 5, timeout=20)
        own_pg.stop("immediate")               # a crash of the database server
        down_at = time.monotonic()
        assert wait_until(lambda: any(s == 503 and at > down_at for at, s in statuses),
                          timeout=30)
        own_pg.start()
        up_at = time.monotonic()
        before = len(acked)
        # No restart of the node: its pool reconnects and writes succeed again.
        assert wait_until(lambda: len(acked) >= before + 5, timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    try:
        assert {s for _, s in statuses} <= {201, 503}
        assert any(s == 201 and at > up_at for at, s in statuses)
        with node.client() as c:
            # Every acknowledged write is whole: record, bytes and search hit.
            for uri, sha in acked.items():
                r = c.get(f"/v1/{WS}/resources/content", params={"uri": uri})
                assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha
            # No record without its bytes (a 503 may still have committed: then it is
            # whole too, like any write whose answer was lost).
            listed, cursor = [], None
            while True:
                body = c.get(f"/v1/{WS}/resources",
                             params={"limit": 100, **({"cursor": cursor} if cursor else {})})
                assert body.status_code == 200, body.text
                listed += body.json()["data"]["items"]
                cursor = body.json()["meta"]["next-cursor"]
                if not cursor:
                    break
            for item in listed:
                r = c.get(f"/v1/{WS}/resources/content", params={"uri": item["uri"]})
                assert hashlib.sha256(r.content).hexdigest() == item["sha256"]
            assert set(acked) <= {item["uri"] for item in listed}
            ready = c.get("/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        stop_server(node)

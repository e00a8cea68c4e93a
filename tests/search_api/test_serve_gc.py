"""`serve` runs the retention sweep itself, in the background, without blocking requests."""
from __future__ import annotations

import time
from pathlib import Path

from server import start_server, stop_server, upload


def test_serve_sweeps_expired_resources_periodically(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv", extra_env={"RESOURCES_GC_INTERVAL_SECONDS": "30"})
    try:
        with server.client("admin") as c:
            r = upload(c, b"short lived", {"filename": "short.txt", "tier": "ephemeral",
                                           "ttl-seconds": 60})
            assert r.status_code == 201
            blob = server.home / r.json()["data"]["path"]
            keep = upload(c, b"long lived", {"filename": "long.txt"})
            assert blob.exists()
            server.advance(120)          # past the ttl and past the next sweep
            deadline = time.monotonic() + 15
            while blob.exists() and time.monotonic() < deadline:
                # requests keep being answered while the sweep runs
                assert c.get("/v1/ws-acme/resources").status_code == 200
                time.sleep(0.1)
            assert not blob.exists()
            listed = c.get("/v1/ws-acme/resources").json()["data"]["items"]
            assert [i["uri"] for i in listed] == [keep.json()["data"]["uri"]]
    finally:
        stop_server(server)

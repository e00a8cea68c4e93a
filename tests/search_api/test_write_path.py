"""`serve` acknowledges writes once durable; the index follows; wait-for=indexed waits.

Real servers (uvicorn subprocesses), real catalog and index. Nothing here is timed: a
change that is not waited for is polled for until a generous deadline.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from server import KEY_SPECS, base_env, cli, ok_body, start_server, stop_server, upload

WS = "ws-acme"


def eventually(check, deadline: float = 20.0):
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.05)


#: Index details on /healthz need the operator's key (service.admin).
OPS_KEYS = {**KEY_SPECS, "ops": ("ops", "service.admin")}


@pytest.fixture(scope="module")
def durable_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("durable"), keys=OPS_KEYS,
                          extra_env={"RESOURCES_WRITE_ACK": "durable"})
    yield server
    stop_server(server)


def search_total(c: httpx.Client, word: str) -> int:
    return ok_body(c.get(f"/v1/{WS}/resources/search", params={"q": word}))["meta"]["total"]


def test_a_durable_ack_is_readable_at_once_and_searchable_soon(durable_server):
    word = f"durable{uuid.uuid4().hex[:10]}"
    with durable_server.client() as c:
        rec = ok_body(upload(c, word.encode(), {"filename": "d.txt"}), 201)["data"]
        # get and read answer from the catalog, never from the (maybe lagging) index
        assert ok_body(c.get(f"/v1/{WS}/resources/by-uri", params={"uri": rec["uri"]}))
        assert c.get(f"/v1/{WS}/resources/content", params={"uri": rec["uri"]}).content \
            == word.encode()
        eventually(lambda: search_total(c, word) == 1)
        meta = ok_body(c.get(f"/v1/{WS}/resources/search", params={"q": word}))["meta"]
        assert set(meta["index"]) == {"position", "behind", "lag-seconds"}
        with durable_server.client("ops") as ops:   # index details: the operator's key
            health = ok_body(ops.get("/healthz"))["data"]["index"]
        assert health["position"] >= meta["index"]["position"] > 0
        assert health["writer"] is True


def test_wait_for_indexed_finds_the_write_every_time(durable_server):
    run = uuid.uuid4().hex[:8]
    with durable_server.client() as c:
        for i in range(200):
            word = f"w{run}n{i}"
            r = c.post(f"/v1/{WS}/resources", params={"wait-for": "indexed"},
                       content=word.encode(), headers={"X-Persist-Spec": '{"filename": "w.txt"}'})
            uri = ok_body(r, 201)["data"]["uri"]
            page = ok_body(c.get(f"/v1/{WS}/resources/search", params={"q": word}))
            assert [it["uri"] for it in page["data"]["items"]] == [uri], i
        ok_body(c.delete(f"/v1/{WS}/resources/by-uri",
                         params={"uri": uri, "wait-for": "indexed"}))
        assert search_total(c, word) == 0


def test_wait_for_indexed_with_concurrent_clients(durable_server):
    """Concurrent persists share one group commit: each still waits for its own change."""
    import threading
    run = uuid.uuid4().hex[:8]
    misses: list[str] = []

    def client(t: int) -> None:
        with durable_server.client() as c:
            for i in range(10):
                word = f"cc{run}t{t}n{i}"
                r = c.post(f"/v1/{WS}/resources", params={"wait-for": "indexed"},
                           content=word.encode(),
                           headers={"X-Persist-Spec": '{"filename": "c.txt"}'})
                if r.status_code != 201 or search_total(c, word) != 1:
                    misses.append(f"{word}: {r.status_code}")

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not misses, misses


def test_wait_for_on_the_other_write_routes(durable_server):
    word = f"other{uuid.uuid4().hex[:10]}"
    with durable_server.client() as c:
        uri = ok_body(upload(c, b"plain body", {"filename": "o.txt"}), 201)["data"]["uri"]
        ok_body(c.post(f"/v1/{WS}/resources/search-index",
                       params={"uri": uri, "op": "update", "wait-for": "indexed"},
                       json={"text": word}))
        assert search_total(c, word) == 1
        r = c.delete("/api/files/by-uri", params={"uri": uri, "wait-for": "indexed"})
        assert r.status_code == 200, r.text
        assert search_total(c, word) == 0
        bad = c.post(f"/v1/{WS}/resources", params={"wait-for": "soon"}, content=b"x")
        assert bad.status_code == 400


def test_remote_cli_wait(durable_server, tmp_path):
    word = f"cliwait{uuid.uuid4().hex[:10]}"
    f = tmp_path / "c.txt"
    f.write_text(word)
    env = durable_server.env()
    cli("persist", str(f), "--wait", "--format", "json", env=env)
    with durable_server.client() as c:
        assert search_total(c, word) == 1


def test_embedded_cli_persist_then_search_finds_it(tmp_path):
    env = base_env(tmp_path / "home")
    env["RESOURCES_WORKSPACE"] = WS
    f = tmp_path / "e.txt"
    f.write_text("embeddedword")
    cli("persist", str(f), "--format", "json", env=env)
    out = cli("search", "embeddedword", "--format", "json", env=env)
    assert b'"total": 1' in out.stdout


def _writer_pid(home: Path) -> int | None:
    try:
        text = (home / "locks" / "index-writer.lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text else None


def test_two_workers_one_index_writer_taken_over_when_it_dies(tmp_path):
    server = start_server(tmp_path / "workers", keys=OPS_KEYS, extra_env={
        "RESOURCES_WRITE_ACK": "durable", "RESOURCES_WORKERS": "2"})
    try:
        holder = eventually(lambda: _writer_pid(server.home))
        writers_seen: set[bool] = set()
        uris = []
        run = uuid.uuid4().hex[:8]
        for i in range(30):
            with server.client() as c, server.client("ops") as ops:   # new connections:
                writers_seen.add(ok_body(ops.get("/healthz"))["data"]["index"]["writer"])
                uris.append(ok_body(upload(c, f"wk{run} item{i}".encode(),
                                           {"filename": f"{i}.txt"}), 201)["data"]["uri"])
        assert writers_seen == {True, False}   # two processes, exactly one writes
        os.kill(holder, signal.SIGKILL)
        # Another process holds the writer lock within 5 s (the bound).
        end = time.monotonic() + 5
        while _writer_pid(server.home) in (holder, None) and time.monotonic() < end:
            time.sleep(0.05)
        assert _writer_pid(server.home) not in (holder, None)

        def post_after(i: int) -> str | None:
            try:
                with server.client() as c:
                    r = upload(c, f"wk{run} late{i}".encode(), {"filename": f"l{i}.txt"})
                    return r.json()["data"]["uri"] if r.status_code == 201 else None
            except httpx.TransportError:
                return None                    # a connection to the killed worker
        for i in range(10):
            uris.append(eventually(lambda: post_after(i)))
        with server.client() as c:
            eventually(lambda: search_total(c, f"wk{run}") == len(uris))
            page = ok_body(c.get(f"/v1/{WS}/resources/search",
                                 params={"q": f"wk{run}", "limit": 100}))
            assert sorted(it["uri"] for it in page["data"]["items"]) == sorted(uris)
    finally:
        stop_server(server)

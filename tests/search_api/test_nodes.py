"""Two `resources serve` nodes (two data homes, two ports, real uvicorn) sharing one real
PostgreSQL catalog and one real SeaweedFS S3 connection (docs/scale-out.md).

Each node keeps its own index, following the shared change log: a write on one node is
found on the other; a delete on one is gone on the other; slot rewrites racing from both
nodes get strictly increasing versions and leave a blob matching the final record.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import uuid

import httpx
import pytest

from pg_server import wait_until
from server import (KEY_SPECS, RESOURCES, base_env, cli, ok_body, start_server, stop_server,
                    upload)

WS = "ws-acme"
#: base URL -> the environment its node was started with (for a restart).
ENV: dict[str, dict] = {}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, postgres, seaweedfs):
    url = postgres.new_database()
    env = {"RESOURCES_CATALOG_URL": url,
           "RESOURCES_CONNECTION_SHARED": seaweedfs.connection_url(f"nodes/{uuid.uuid4().hex}"),
           **seaweedfs.env()}
    root = tmp_path_factory.mktemp("nodes")
    a = start_server(root / "a", extra_env=env,
                     keys={k: KEY_SPECS[k] for k in ("admin", "read")})
    try:
        # Keys live in the shared catalog: B verifies the ones made on A's home.
        b = start_server(root / "b", extra_env=env, keys={})
        b.keys = dict(a.keys)
    except BaseException:
        stop_server(a)
        raise
    with a.client() as c:
        ok_body(c.put(f"/v1/{WS}/slots/archive",
                      json={"root": "reports", "connection": "shared"}))
    ENV.update({a.base: env, b.base: env})
    yield a, b
    stop_server(a)
    stop_server(b)


def search_uris(server, q: str) -> list[str]:
    with server.client() as c:
        body = ok_body(c.get(f"/v1/{WS}/resources/search", params={"q": q}))
    return [item["uri"] for item in body["data"]["items"]]


def content(server, uri: str) -> bytes:
    with server.client() as c:
        r = c.get(f"/v1/{WS}/resources/content", params={"uri": uri})
        assert r.status_code == 200, r.text
        return r.content


def test_both_nodes_are_listed_with_their_positions(nodes):
    a, b = nodes
    with a.client() as c:
        body = ok_body(c.get(f"/v1/{WS}/cluster"))
    data = body["data"]
    assert data["catalog"] == "postgresql"
    listed = {n["url"]: n for n in data["nodes"]}
    assert set(listed) == {a.base, b.base}
    assert all(n["live"] and n["index-follower"] for n in listed.values())
    assert [n["this-node"] for n in (listed[a.base], listed[b.base])] == [True, False]
    with b.client("read") as c:      # an admin route: a read key is refused
        assert c.get(f"/v1/{WS}/cluster").status_code == 403


def test_persist_on_a_is_found_and_read_on_b(nodes):
    a, b = nodes
    word = f"wordnode{uuid.uuid4().hex[:8]}"
    body = f"shared document {word}\n".encode()
    with a.client() as c:
        rec = ok_body(upload(c, body, {"slot": "archive", "path": "x", "filename": f"{word}.txt"},
                             ), 201)["data"]
    # Without waiting for every node, B's own follower picks it up within the interval.
    assert wait_until(lambda: search_uris(b, word) == [rec["uri"]], timeout=5.0)
    assert content(b, rec["uri"]) == body

    # wait-for=all: once answered, every live node's search shows it.
    word2 = f"wordall{uuid.uuid4().hex[:8]}"
    with b.client() as c:
        r = c.post(f"/v1/{WS}/resources", content=f"all {word2}\n".encode(),
                   params={"wait-for": "all"},
                   headers={"X-Persist-Spec": json.dumps({"slot": "archive", "path": "y",
                                                          "filename": f"{word2}.txt"})})
        rec2 = ok_body(r, 201)["data"]
    assert search_uris(a, word2) == [rec2["uri"]] == search_uris(b, word2)


def test_delete_on_b_is_gone_on_a(nodes):
    a, b = nodes
    word = f"wordgone{uuid.uuid4().hex[:8]}"
    with a.client() as c:
        rec = ok_body(upload(c, f"doomed {word}\n".encode(),
                             {"slot": "archive", "path": "d", "filename": f"{word}.txt"},
                             **{"wait-for": "all"}), 201)["data"]
    assert wait_until(lambda: search_uris(b, word) == [rec["uri"]], timeout=5.0)
    with b.client() as c:
        ok_body(c.delete(f"/v1/{WS}/resources/by-uri",
                         params={"uri": rec["uri"], "wait-for": "all"}))
    assert search_uris(a, word) == []
    with a.client() as c:
        assert c.get(f"/v1/{WS}/resources/by-uri", params={"uri": rec["uri"]}).status_code == 404


def test_slot_rewrites_racing_from_both_nodes(nodes):
    """A rewrite that began before another one committed loses with 409 (nothing of it
    published: tests/storage/test_s3_connection.py); every one that wins gets the next version."""
    a, b = nodes
    spec = {"slot": "archive", "path": "race", "filename": f"r{uuid.uuid4().hex[:6]}.txt"}
    won: list[list[int]] = []
    uris: set[str] = set()
    errors: list[str] = []

    def write(server, n: int) -> None:
        mine: list[int] = []
        with server.client() as c:
            for i in range(n):
                r = upload(c, f"{server.port} {i} {uuid.uuid4().hex}\n".encode(), spec)
                if r.status_code == 409 and r.json()["error"]["code"] == "version_conflict":
                    continue
                if r.status_code not in (200, 201):
                    errors.append(r.text)
                    continue
                rec = r.json()["data"]
                mine.append(rec["version"])
                uris.add(rec["uri"])
        won.append(mine)

    threads = [threading.Thread(target=write, args=(s, 5)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = sorted(v for mine in won for v in mine)
    assert len(uris) == 1 and versions
    assert versions == list(range(1, len(versions) + 1))     # none twice, none skipped
    assert all(mine == sorted(set(mine)) for mine in won)    # each writer's increase
    (uri,) = uris
    with b.client() as c:
        final = ok_body(c.get(f"/v1/{WS}/resources/by-uri", params={"uri": uri}))["data"]
    assert final["version"] == versions[-1]
    for server in (a, b):
        assert hashlib.sha256(content(server, uri)).hexdigest() == final["sha256"]


def test_a_third_node_starts_from_an_index_snapshot(nodes, tmp_path):
    """A snapshot published from A's home (while A serves) bootstraps node C, which then
    replays the log from the snapshot's position and answers like A and B."""
    a, b = nodes
    words = []
    for i in range(3):
        word = f"wordsnap{uuid.uuid4().hex[:8]}"
        with a.client() as c:
            ok_body(upload(c, f"before {word}\n".encode(),
                           {"slot": "archive", "path": "snap", "filename": f"{word}.txt"},
                           **{"wait-for": "all"}), 201)
        words.append(word)
    env = base_env(a.home)
    env.update(ENV[a.base])
    published = json.loads(cli("index-snapshot", "--connection", "shared", "--format", "json",
                               env=env).stdout)["data"]
    assert published["key"].startswith("_index-snapshots/") and published["position"] > 0
    # A write after the snapshot: C must get it from the log, not from the snapshot.
    late = f"wordlate{uuid.uuid4().hex[:8]}"
    with b.client() as c:
        ok_body(upload(c, f"after {late}\n".encode(),
                       {"slot": "archive", "path": "snap", "filename": f"{late}.txt"}), 201)
    words.append(late)
    c_node = start_server(tmp_path / "c", extra_env={**ENV[a.base],
                                                    "RESOURCES_INDEX_SNAPSHOTS": "shared"},
                          keys={})
    c_node.keys = dict(a.keys)
    try:
        assert "restored from snapshot" in c_node.stderr_text()
        for word in words:
            assert wait_until(lambda: search_uris(c_node, word) == search_uris(a, word) != [],
                              timeout=10), word
        for q in ("before", "after", "shared"):
            assert sorted(search_uris(c_node, q)) == sorted(search_uris(b, q))
    finally:
        stop_server(c_node)


def _restart(server, env: dict) -> None:
    """Start `serve` again on the same home and port (after a SIGKILL)."""
    full = base_env(server.home, server.clock_file, server.base)
    full.update(env)
    with open(server.log, "ab") as fh:
        server.proc = subprocess.Popen(
            [RESOURCES, "serve", "--host", "127.0.0.1", "--port", str(server.port)],
            env=full, stdout=fh, stderr=subprocess.STDOUT, cwd=server.home.parent,
            start_new_session=True)
    server.pid = server.proc.pid

    def up() -> bool:
        try:
            return httpx.get(f"{server.base}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False
    assert wait_until(up, timeout=60), server.stderr_text()[-2000:]


def test_sigkill_of_a_node_mid_write(nodes):
    """B keeps serving while A is dead; A restarts, recovers and catches up; every
    acknowledged write is found exactly once on both nodes."""
    a, b = nodes
    acked: dict[str, str] = {}          # word -> uri
    stop = threading.Event()

    def load(server) -> None:
        with server.client(timeout=30.0) as c:
            while not stop.is_set():
                word = f"wordkill{uuid.uuid4().hex[:10]}"
                spec = {"slot": "archive", "path": "kill", "filename": f"{word}.txt"}
                try:
                    r = upload(c, f"{word}\n".encode(), spec)
                except httpx.TransportError:
                    return                       # the node died under this request
                if r.status_code == 201:
                    acked[word] = r.json()["data"]["uri"]

    threads = [threading.Thread(target=load, args=(s,)) for s in (a, a, b)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(acked) >= 10, timeout=30)
    os.killpg(a.proc.pid, signal.SIGKILL)        # mid-write: two writers were busy on A
    a.proc.wait(10)
    during = len(acked)
    # B goes on writing (the commit lock died with A's session) and answering.
    assert wait_until(lambda: len(acked) >= during + 5, timeout=30)
    stop.set()
    for t in threads:
        t.join(60)
    _restart(a, ENV[a.base])
    for server in (a, b):
        for word, uri in acked.items():
            assert wait_until(lambda: search_uris(server, word) == [uri], timeout=10), \
                (server.base, word)
    with a.client() as c:
        data = ok_body(c.get(f"/v1/{WS}/cluster"))["data"]
    assert all(n["live"] and n["behind"] == 0 for n in data["nodes"] if n["live"])

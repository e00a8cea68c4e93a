"""`resources migrate --to postgresql://… --connection shared --verify`: a one-machine
home (SQLite + blobs in the home) moves to a real PostgreSQL and a real SeaweedFS; a node
on the shared catalog then answers the same searches with the same bytes.

RESOURCES_MIGRATE_TEST_SIZE sets how many resources (the issue's figure is 10,000;
the default keeps the suite fast)."""
from __future__ import annotations

import hashlib
import json
import os
import uuid

from search_api.service import ResourceService
from server import cli
from storage.config import Settings

WS = "ws-acme"
SIZE = int(os.environ.get("RESOURCES_MIGRATE_TEST_SIZE", "200"))
QUERIES = ["rare", "word7", "slotted", "rare word40"]


def answers(svc: ResourceService) -> dict[str, object]:
    """Hits in rank order of queries that match few documents (equal scores would let a
    rebuilt index order ties differently), plus the total of one that matches all."""
    out: dict[str, object] = {q: [r.uri for r in svc.search(WS, q, {"limit": 50}).items]
                              for q in QUERIES}
    out["common"] = svc.search(WS, "common").total
    return out


def test_migrate_a_home_to_postgresql_and_s3(tmp_path, pg_url, seaweedfs, monkeypatch):
    monkeypatch.setenv("RESOURCES_CONNECTION_SHARED",
                       seaweedfs.connection_url(f"migrate/{uuid.uuid4().hex}"))
    home = tmp_path / "home"
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        svc.bind_slot(WS, "archive", "reports")
        items = [({"filename": f"d{i}.txt", "tags": [f"t{i % 3}"]},
                  f"common word{i}{' rare' if i % 20 == 0 else ''}\n".encode())
                 for i in range(SIZE)]
        items.append(({"slot": "archive", "filename": "s.txt"}, b"slotted report\n"))
        svc.persist_many(WS, items)
        svc.kv.set(WS, "latest", {"ref": "x"})
        key_id, token = svc.keys.create(WS, ["resources.read"], "ci", svc.now())
        before = answers(svc)
        count = svc.catalog.resources.count()
    finally:
        svc.close()
    assert count == SIZE + 1 and before["common"] == SIZE and len(before["rare"]) == SIZE // 20

    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env.update(RESOURCES_HOME=str(home), **{
        "RESOURCES_CONNECTION_SHARED": os.environ["RESOURCES_CONNECTION_SHARED"]})
    args = ("migrate", "--to", pg_url, "--connection", "shared", "--verify", "--format", "json")
    report = json.loads(cli(*args, env=env).stdout)["data"]
    assert report["verified"] is True and report["problems"] == []
    assert report["copied"]["resources"] == count and report["blobs-moved"] == count
    # Resumable: a second run finds everything done and still verifies.
    again = json.loads(cli(*args, env=env).stdout)["data"]
    assert again["verified"] is True and again["blobs-moved"] == 0

    settings = Settings.from_env(tmp_path / "node")
    settings.catalog_url = pg_url
    node = ResourceService(settings, log=lambda m: None)      # builds its index from PG
    try:
        assert answers(node) == before
        some = node.search(WS, "word7").items[0]
        assert some.connection == "shared" and some.storage_backend == "s3"
        data = b"".join(node.read(WS, some.uri)[3])
        assert hashlib.sha256(data).hexdigest() == some.sha256
        assert node.keys.authenticate(f"Bearer {token}").key_id == key_id
        assert node.kv.get(WS, "latest").value == {"ref": "x"}
        # New writes sort after the migrated ones (the write sequence carried over).
        new = node.persist(WS, {"filename": "new.txt"}, b"common fresh\n").resource
        assert node.list(WS).items[0].uri == new.uri
    finally:
        node.close()

"""Retention: `gc` removes exactly the resources past their expires-at (controlled clock),
blob, record and index document together; `--dry-run` only lists them."""
from __future__ import annotations

import json

import pytest

from conftest import fresh_index_ids
from server import base_env, cli
from storage.errors import NotFound

WS = "ws-acme"
HOUR = 3600


@pytest.fixture
def population(svc):
    """Resources with different lifetimes; returns name -> Resource."""
    specs = {
        "eph-default": {"tier": "ephemeral"},                         # 24 h
        "eph-1h": {"tier": "ephemeral", "ttl-seconds": HOUR},
        "ret-2h": {"ttl-seconds": 2 * HOUR},
        "ret-default": {},                                            # 365 d
        "other-ws-1h": {"ttl-seconds": HOUR, "_ws": "ws-other"},
        "kv-1h": {"type": "kv", "ttl-seconds": HOUR},
    }
    out = {}
    for name, spec in specs.items():
        spec = dict(spec)
        ws = spec.pop("_ws", WS)
        body = b'{"name": "%s"}' % name.encode() if spec.get("type") == "kv" else \
            f"gc fixture {name}\n".encode() * 20
        out[name] = svc.persist(ws, {**spec, "filename": f"{name}.txt"}, body).resource
    return out


def blob_exists(svc, res) -> bool:
    return (svc.settings.home / res.path).is_file()


def index_ids(svc) -> set[str]:
    return {id_ for id_, _ in svc.index.doc_ids()}



def state(svc) -> tuple:
    blobs = sorted(str(p.relative_to(svc.settings.home))
                   for p in (svc.settings.home / "workspaces").rglob("*") if p.is_file())
    ids = sorted(r.id for r in svc.catalog.resources.all())
    return blobs, ids, sorted(index_ids(svc))


def test_gc_removes_exactly_the_expired(svc, clock, population):
    assert all(blob_exists(svc, r) for r in population.values())
    assert {r.id for r in population.values()} <= index_ids(svc)
    assert svc.gc()["count"] == 0                                   # nothing due yet

    clock.advance(HOUR)                                             # exactly at expires-at
    due = {"eph-1h", "other-ws-1h", "kv-1h"}
    assert {r.uri for r in svc.expired()} == {population[n].uri for n in due}
    result = svc.gc()
    assert result["dry-run"] is False
    assert sorted(result["removed"]) == sorted(population[n].uri for n in due)
    assert result["count"] == 3
    assert result["bytes"] == sum(population[n].size for n in due)

    ids = index_ids(svc)
    for name, res in population.items():
        gone = name in due
        assert blob_exists(svc, res) is not gone, name
        assert (res.id in ids) is not gone, name
        assert (svc.catalog.resources.get(res.id) is None) is gone, name

    clock.advance(HOUR)
    assert svc.gc()["removed"] == [population["ret-2h"].uri]
    clock.advance(22 * HOUR)
    assert svc.gc()["removed"] == [population["eph-default"].uri]
    assert not blob_exists(svc, population["eph-default"])
    assert {r.id for r in svc.catalog.resources.all()} == {population["ret-default"].id}
    assert index_ids(svc) == {population["ret-default"].id}
    assert svc.gc() == {"dry-run": False, "removed": [], "count": 0, "bytes": 0,
                        "kv-removed": []}


def test_expired_is_invisible_before_gc(svc, clock, population):
    res = population["eph-1h"]
    assert res.uri in [r.uri for r in svc.search(WS, '"eph-1h.txt"').items]
    clock.advance(HOUR)
    with pytest.raises(NotFound):
        svc.get(WS, res.uri)
    with pytest.raises(NotFound):
        svc.read(WS, res.uri)
    assert res.uri not in [r.uri for r in svc.list(WS).items]
    assert svc.search(WS, '"eph-1h.txt"').items == []
    assert svc.search(WS, "fixture").total == 2                     # ret-2h and ret-default
    assert blob_exists(svc, res)                                    # still on disk until gc


def test_dry_run_changes_nothing_but_lists(svc, clock, population):
    clock.advance(2 * HOUR)
    svc.kv.set(WS, "short", 1, ttl=60)
    clock.advance(60)
    before = state(svc)
    preview = svc.gc(dry_run=True)
    due = ["eph-1h", "other-ws-1h", "kv-1h", "ret-2h"]
    assert preview["dry-run"] is True
    assert sorted(preview["removed"]) == sorted(population[n].uri for n in due)
    assert preview["count"] == 4
    assert preview["kv-removed"] == [f"{WS}:short"]
    assert state(svc) == before
    assert svc.catalog.kv.count() == 1
    assert svc.gc(dry_run=True) == preview                          # repeatable
    done = svc.gc()
    assert sorted(done["removed"]) == sorted(preview["removed"])
    assert state(svc) != before


def test_cli_gc_dry_run_and_gc(svc, clock, population, home):
    env = base_env(home, clock.path)
    env["RESOURCES_WORKSPACE"] = WS
    clock.advance(HOUR)
    due = sorted(population[n].uri for n in ("eph-1h", "other-ws-1h", "kv-1h"))
    before = state(svc)

    preview = json.loads(cli("gc", "--dry-run", "--format", "json", env=env).stdout)
    assert preview["data"]["dry-run"] is True
    assert sorted(preview["data"]["removed"]) == due
    assert preview["meta"]["count"] == 3
    assert state(svc) == before

    done = json.loads(cli("gc", "--format", "json", env=env).stdout)
    assert done["data"]["dry-run"] is False
    assert sorted(done["data"]["removed"]) == due
    assert done["data"]["count"] == done["meta"]["count"] == 3
    assert done["data"]["bytes"] == sum(population[n].size
                                        for n in ("eph-1h", "other-ws-1h", "kv-1h"))
    for name in ("eph-1h", "other-ws-1h", "kv-1h"):
        res = population[name]
        assert not blob_exists(svc, res) and svc.catalog.resources.get(res.id) is None
    kept = {population[n].id for n in ("eph-default", "ret-2h", "ret-default")}
    assert {r.id for r in svc.catalog.resources.all()} == kept
    assert fresh_index_ids(home) == kept

    again = json.loads(cli("gc", "--format", "json", env=env).stdout)
    assert again["data"]["removed"] == [] and again["meta"]["count"] == 0
    table = cli("gc", "--dry-run", "--format", "table", env=env).stdout.decode()
    assert table.startswith("would remove 0 expired resource(s)")   # issue 20: says "would"


def test_gc_leaves_no_empty_run_folders(svc, clock):
    res = svc.persist(WS, {"flow": "nightly", "step": "dump", "path": "a/b",
                           "filename": "x.bin", "ttl-seconds": 10}, b"x").resource
    folder = (svc.settings.home / res.path).parent
    assert folder.is_dir()
    clock.advance(10)
    svc.gc()
    assert not (svc.settings.home / "workspaces" / WS / "persist" / "nightly").exists()

"""The KV pointer store (service level and the embedded CLI): seed 000's pattern end to
end (persist a blob, point a TTL'd key at it, resolve it; missing / expired refs and the
doctor's dangling-ref count), TTL expiry with a controlled clock, prefix listing newest
first with cursor paging, versions."""
from __future__ import annotations

import json

import pytest

from conftest import T0
from server import cli
from storage.clock import parse_rfc3339
from storage.errors import BadRequest, NotFound, TooLarge, VersionConflict

WS = "ws-acme"


def run_json(*args: str, env: dict, check: bool = True):
    proc = cli(*args, "--format", "json", env=env, check=check)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def kv_rows(svc, key: str | None = None) -> list[tuple]:
    sql, params = "SELECT workspace, key, version FROM kv", ()
    if key is not None:
        sql, params = sql + " WHERE key = ?", (key,)
    return svc.catalog.database.reader().execute(sql, params).fetchall()


# -- seed 000's pattern --------------------------------------------------------------------
def test_seed_pattern_end_to_end_through_the_cli(env, tmp_path):
    blob = tmp_path / "records.jsonl"
    blob.write_bytes(b'{"n": 1}\n{"n": 2}\n' * 100)
    _, persisted = run_json("persist", str(blob), "--flow", "ingest", "--step", "export", env=env)
    uri = persisted["data"]["uri"]

    _, setres = run_json("kv", "set", "records:latest", json.dumps({"ref": uri}),
                         "--ttl", "604800", env=env)
    assert setres["data"]["version"] == 1 and setres["meta"]["created"] is True
    created = parse_rfc3339(setres["data"]["created-at"])
    assert parse_rfc3339(setres["data"]["expires-at"]) == pytest.approx(created + 604800, abs=0.002)

    _, got = run_json("kv", "get", "records:latest", "--resolve", env=env)
    assert got["data"]["value"] == {"ref": uri}
    ref = got["data"]["refs"][uri]
    assert ref["reason"] is None
    assert ref["record"]["uri"] == uri
    assert ref["record"]["sha256"] == persisted["data"]["sha256"]
    assert ref["record"]["size"] == blob.stat().st_size
    # without --resolve: the compact pointer only
    _, plain = run_json("kv", "get", "records:latest", env=env)
    assert "refs" not in plain["data"]

    _, doc = run_json("doctor", env=env)
    assert doc["data"]["dangling-kv-refs"]["count"] == 0

    run_json("delete", uri, env=env)
    _, got = run_json("kv", "get", "records:latest", "--resolve", env=env)
    assert got["data"]["refs"] == {uri: {"record": None, "reason": "missing"}}
    assert got["data"]["value"] == {"ref": uri}      # the KV record is not touched

    proc, doc = run_json("doctor", env=env)
    assert proc.returncode == 0        # a dangling pointer is reported, not a corruption
    dangling = doc["data"]["dangling-kv-refs"]
    assert dangling["count"] == 1
    assert dangling["items"] == [{"workspace": WS, "key": "records:latest", "uri": uri,
                                  "reason": "missing"}]


def test_resolve_reports_an_expired_resource_as_expired_until_gc(svc, clock):
    res = svc.persist(WS, {"filename": "out.bin", "ttl-seconds": 3600}, b"x" * 100).resource
    keep = svc.persist(WS, {"filename": "keep.bin"}, b"y" * 10).resource
    entry, _ = svc.kv.set(WS, "run:1", {"out": res.uri, "nested": [{"also": keep.uri}]}, ttl=86400)
    refs = svc.resolve_refs(WS, entry)
    assert refs[res.uri]["reason"] is None and refs[res.uri]["record"]["id"] == res.id
    assert refs[keep.uri]["reason"] is None

    clock.advance(3600)                          # exactly at expires-at: gone
    entry = svc.kv.get(WS, "run:1")              # the KV key itself lives on (ttl 1 day)
    refs = svc.resolve_refs(WS, entry)
    assert refs[res.uri] == {"record": None, "reason": "expired"}
    assert refs[keep.uri]["record"]["id"] == keep.id
    assert svc.dangling_refs() == [{"workspace": WS, "key": "run:1", "uri": res.uri,
                                    "reason": "expired"}]

    svc.gc()
    refs = svc.resolve_refs(WS, svc.kv.get(WS, "run:1"))
    assert refs[res.uri] == {"record": None, "reason": "missing"}


def test_resolve_never_crosses_workspaces(svc):
    other = svc.persist("ws-other", {"filename": "secret.bin"}, b"s").resource
    entry, _ = svc.kv.set(WS, "probe", {"ref": other.uri})
    assert svc.resolve_refs(WS, entry) == {other.uri: {"record": None, "reason": "missing"}}
    # a malformed ref-looking string is simply not a ref
    entry, _ = svc.kv.set(WS, "junk", {"ref": "res://v1/ws/ws-acme/file/not-a-ulid"})
    assert svc.resolve_refs(WS, entry) == {}


# -- TTL -----------------------------------------------------------------------------------
def test_ttl_expiry_is_invisible_at_once_and_swept_by_gc(svc, clock):
    svc.kv.set(WS, "tmp:a", {"v": 1}, ttl=60)
    svc.kv.set(WS, "tmp:b", {"v": 2})
    svc.kv.set("ws-other", "tmp:a", {"v": 3}, ttl=600)
    clock.advance(59.9)
    assert svc.kv.get(WS, "tmp:a").value == {"v": 1}

    clock.advance(0.1)                           # now == expires-at
    with pytest.raises(NotFound):
        svc.kv.get(WS, "tmp:a")
    items, total, _ = svc.kv.list(WS, "tmp:")
    assert [e.key for e in items] == ["tmp:b"] and total == 1
    with pytest.raises(NotFound):
        svc.kv.delete(WS, "tmp:a")
    assert kv_rows(svc, "tmp:a") == [(WS, "tmp:a", 1), ("ws-other", "tmp:a", 1)]  # not swept yet

    preview = svc.gc(dry_run=True)
    assert preview["kv-removed"] == [f"{WS}:tmp:a"]
    assert len(kv_rows(svc)) == 3
    result = svc.gc()
    assert result["kv-removed"] == [f"{WS}:tmp:a"]
    assert sorted(kv_rows(svc)) == [(WS, "tmp:b", 1), ("ws-other", "tmp:a", 1)]
    assert svc.kv.get("ws-other", "tmp:a").value == {"v": 3}


def test_an_expired_key_set_again_starts_over(svc, clock):
    svc.kv.set(WS, "k", 1, ttl=10)
    svc.kv.set(WS, "k", 2, ttl=10)
    clock.advance(10)
    entry, created = svc.kv.set(WS, "k", 3, if_version=0)    # absent again: 0 matches
    assert created and entry.version == 1 and entry.created_at == clock.now()
    assert entry.expires_at is None


def test_ttl_through_the_cli(env, clock):
    run_json("kv", "set", "cli:ttl", '{"a": 1}', "--ttl", "30", env=env)
    _, listed = run_json("kv", "list", "--prefix", "cli:", env=env)
    assert [i["key"] for i in listed["data"]["items"]] == ["cli:ttl"]
    clock.advance(30)
    proc, _ = run_json("kv", "get", "cli:ttl", env=env, check=False)
    assert proc.returncode == 1
    # issue 20: the CLI names a missing kv key for what it is
    assert json.loads(proc.stderr)["error"]["code"] == "kv_key_not_found"
    _, listed = run_json("kv", "list", "--prefix", "cli:", env=env)
    assert listed["data"]["items"] == [] and listed["meta"]["total"] == 0
    _, swept = run_json("gc", env=env)
    assert swept["data"]["kv-removed"] == [f"{WS}:cli:ttl"]


# -- listing -------------------------------------------------------------------------------
def test_list_by_prefix_newest_first_with_cursor_paging(svc, clock):
    for i in range(1, 6):
        svc.kv.set(WS, f"runs:{i}", {"i": i})
        clock.advance(1)
    svc.kv.set(WS, "other:1", {})
    svc.kv.set(WS, "runsX", {})                  # a prefix is a string prefix, not a folder
    svc.kv.set("ws-other", "runs:9", {})
    svc.kv.set(WS, "runs:2", {"i": 2, "again": True})     # last set: newest

    seen, cursor, pages = [], None, 0
    while True:
        items, total, cursor = svc.kv.list(WS, "runs:", limit=2, cursor=cursor)
        assert total == 5
        seen += [e.key for e in items]
        pages += 1
        if cursor is None:
            break
    assert seen == ["runs:2", "runs:5", "runs:4", "runs:3", "runs:1"]
    assert pages == 3

    items, total, _ = svc.kv.list(WS, "runs")
    assert [e.key for e in items] == ["runs:2", "runsX", "runs:5", "runs:4", "runs:3", "runs:1"]
    items, total, _ = svc.kv.list(WS)
    assert total == 7
    # LIKE wildcards in a prefix are literal
    svc.kv.set(WS, "50%off", 1)
    svc.kv.set(WS, "50_off", 1)
    assert [e.key for e in svc.kv.list(WS, "50%")[0]] == ["50%off"]
    with pytest.raises(BadRequest):
        svc.kv.list(WS, "", cursor="!!not-a-cursor!!")


def test_cli_list_pages_with_the_cursor(env):
    for i in range(3):
        run_json("kv", "set", f"page:{i}", str(i), env=env)
    _, first = run_json("kv", "list", "--prefix", "page:", "--limit", "2", env=env)
    assert [i["key"] for i in first["data"]["items"]] == ["page:2", "page:1"]
    assert first["meta"]["total"] == 3 and first["meta"]["next-cursor"]
    _, second = run_json("kv", "list", "--prefix", "page:", "--limit", "2",
                         "--cursor", first["meta"]["next-cursor"], env=env)
    assert [i["key"] for i in second["data"]["items"]] == ["page:0"]
    assert second["meta"]["next-cursor"] is None


# -- versions and compare-and-set ----------------------------------------------------------
def test_versions_start_at_one_and_rise_by_one_keeping_created_at(svc, clock):
    e1, created = svc.kv.set(WS, "v", {"n": 1})
    assert created and e1.version == 1 and e1.created_at == e1.updated_at == T0
    clock.advance(5)
    e2, created = svc.kv.set(WS, "v", {"n": 2})
    assert not created and e2.version == 2
    assert e2.created_at == T0 and e2.updated_at == T0 + 5
    clock.advance(5)
    e3, _ = svc.kv.set(WS, "v", {"n": 3}, if_version=2)
    assert e3.version == 3 and e3.created_at == T0
    with pytest.raises(VersionConflict):
        svc.kv.set(WS, "v", {"n": 4}, if_version=2)
    with pytest.raises(VersionConflict):
        svc.kv.set(WS, "v", {"n": 4}, if_version=0)            # 0: only if absent
    assert svc.kv.get(WS, "v").value == {"n": 3} and svc.kv.get(WS, "v").version == 3
    deleted = svc.kv.delete(WS, "v")
    assert deleted.version == 3
    e, created = svc.kv.set(WS, "v", {"n": 5}, if_version=0)
    assert created and e.version == 1 and e.created_at == T0 + 10


def test_cli_versions_and_compare_and_set(env):
    _, a = run_json("kv", "set", "cli:v", '"one"', env=env)
    _, b = run_json("kv", "set", "cli:v", '"two"', "--if-version", "1", env=env)
    assert (a["data"]["version"], b["data"]["version"]) == (1, 2)
    assert b["data"]["created-at"] == a["data"]["created-at"]
    assert b["meta"]["created"] is False
    proc, _ = run_json("kv", "set", "cli:v", '"three"', "--if-version", "1", env=env, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stderr)["error"]
    assert err["code"] == "version_conflict" and err["details"]["version"] == 2
    _, got = run_json("kv", "get", "cli:v", env=env)
    assert got["data"]["value"] == "two" and got["data"]["version"] == 2
    _, deleted = run_json("kv", "delete", "cli:v", env=env)
    assert deleted["meta"]["deleted"] is True
    proc, _ = run_json("kv", "get", "cli:v", env=env, check=False)
    assert proc.returncode == 1


def test_service_rejects_bad_input_and_writes_nothing(svc):
    for key, value, ttl, exc in [
        ("", 1, None, BadRequest), ("k" * 513, 1, None, BadRequest),
        ("a\x01b", 1, None, BadRequest), ("a\nb", 1, None, BadRequest),
        ("k", 1, 0, BadRequest), ("k", 1, -5, BadRequest), ("k", 1, "abc", BadRequest),
        ("k", 1, 1.5, BadRequest), ("k", float("nan"), None, BadRequest),
        ("k", "x" * 262_143, None, TooLarge),
    ]:
        with pytest.raises(exc):
            svc.kv.set(WS, key, value, ttl)
    with pytest.raises(BadRequest):
        svc.kv.set(WS, "k", 1, if_version=-1)
    assert kv_rows(svc) == []
    # the bounds themselves are fine
    svc.kv.set(WS, "k" * 512, "x" * 262_142)               # 262,144 bytes encoded
    assert kv_rows(svc) == [(WS, "k" * 512, 1)]

"""The KV routes against a real `resources serve`: PUT/GET/DELETE/list, percent-encoded
keys, compare-and-set under 20 concurrent writers, workspace isolation, and bad input
(400/413, nothing written) over HTTP and through the remote CLI."""
from __future__ import annotations

import json
import threading
import uuid
from urllib.parse import quote

import httpx
import pytest

from server import (cli, error_body, internal_errors, ok_body, start_server, stop_server,
                    upload)

KV = "/v1/ws-acme/kv"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("kv-api"))
    yield server
    assert internal_errors(server) == []
    stop_server(server)


@pytest.fixture(scope="module")
def c(srv):
    with srv.client("admin") as client:
        yield client


def uid() -> str:
    return uuid.uuid4().hex[:10]


def path(key: str, ws: str = "ws-acme") -> str:
    return f"/v1/{ws}/kv/{quote(key, safe='')}"


def kv_total(c, prefix: str = "") -> int:
    return ok_body(c.get(KV, params={"prefix": prefix}))["meta"]["total"]


# -- the basic routes ----------------------------------------------------------------------
def test_put_201_then_200_get_resolve_delete(srv, c):
    res = ok_body(upload(c, b"a large output\n" * 50, {"filename": "out.txt"}), 201)["data"]
    key = f"records/{uid()}:latest"              # ':' and '/' in the key
    r = c.put(path(key), json={"value": {"ref": res["uri"]}, "ttl": 604800})
    body = ok_body(r, 201)
    assert body["data"]["key"] == key and body["data"]["version"] == 1
    assert body["meta"]["created"] is True
    assert body["data"]["expires-at"] is not None

    r = c.put(path(key), json={"value": {"ref": res["uri"], "n": 2}})
    body = ok_body(r, 200)
    assert body["data"]["version"] == 2 and body["meta"]["created"] is False
    assert body["data"]["expires-at"] is None      # a set without ttl clears it

    got = ok_body(c.get(path(key)))["data"]
    assert got["value"] == {"ref": res["uri"], "n": 2} and "refs" not in got
    resolved = ok_body(c.get(path(key), params={"resolve": "true"}))["data"]
    ref = resolved["refs"][res["uri"]]
    assert ref["reason"] is None
    assert ref["record"]["uri"] == res["uri"] and ref["record"]["sha256"] == res["sha256"]
    assert ref["record"]["webUrl"].startswith(srv.base)

    ok_body(c.delete("/v1/ws-acme/resources/by-uri", params={"uri": res["uri"]}))
    resolved = ok_body(c.get(path(key), params={"resolve": "true"}))["data"]
    assert resolved["refs"] == {res["uri"]: {"record": None, "reason": "missing"}}

    deleted = ok_body(c.delete(path(key)))
    assert deleted["meta"]["deleted"] is True and deleted["data"]["version"] == 2
    error_body(c.get(path(key)), 404, "not_found")
    error_body(c.delete(path(key)), 404, "not_found")


def test_keys_with_separators_round_trip_percent_encoded(c):
    base = uid()
    keys = [f"{base}:a", f"{base}/a", f"{base}/a/b:c", f"{base} space", f"{base}:ünï",
            f"{base}%2F", f"{base}?x=1#y"]
    for i, key in enumerate(keys):
        ok_body(c.put(path(key), json={"value": i}), 201)
    for i, key in enumerate(keys):
        got = ok_body(c.get(path(key)))["data"]
        assert (got["key"], got["value"]) == (key, i)
    items = ok_body(c.get(KV, params={"prefix": base}))["data"]["items"]
    assert [i["key"] for i in items] == list(reversed(keys))
    # an unencoded slash is the same key (the route takes the rest of the path)
    assert ok_body(c.get(f"{KV}/{base}/a/b:c"))["data"]["value"] == 2


def test_list_prefix_limit_cursor(c):
    p = f"list-{uid()}:"
    for i in range(5):
        ok_body(c.put(path(f"{p}{i}"), json={"value": i}), 201)
    ok_body(c.put(path(f"{p}1"), json={"value": "again"}), 200)
    seen, cursor = [], None
    while True:
        params = {"prefix": p, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = ok_body(c.get(KV, params=params))
        assert body["meta"]["total"] == 5 and body["meta"]["count"] == len(body["data"]["items"])
        seen += [i["key"] for i in body["data"]["items"]]
        cursor = body["meta"]["next-cursor"]
        if not cursor:
            break
    assert seen == [f"{p}1", f"{p}4", f"{p}3", f"{p}2", f"{p}0"]
    error_body(c.get(KV, params={"cursor": "garbage!"}), 400)
    error_body(c.get(KV, params={"limit": "0"}), 400)
    error_body(c.get(KV, params={"limit": "abc"}), 400)


# -- compare-and-set -----------------------------------------------------------------------
def _race(srv, key: str, body: dict, n: int = 20) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    results: list[httpx.Response | None] = [None] * n

    def worker(i: int) -> None:
        with srv.client("admin") as client:
            barrier.wait()
            results[i] = client.put(path(key), json={**body, "value": {"writer": i}})
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def test_twenty_concurrent_compare_and_set_one_wins(srv, c):
    key = f"cas:{uid()}"
    ok_body(c.put(path(key), json={"value": "start"}), 201)
    results = _race(srv, key, {"if-version": 1})
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [409] * 19, statuses
    for r in results:
        if r.status_code == 409:
            err = error_body(r, 409, "version_conflict")
            assert err["details"]["version"] == 2
    winner = next(r for r in results if r.status_code == 200).json()["data"]
    got = ok_body(c.get(path(key)))["data"]
    assert got["version"] == 2 and got["value"] == winner["value"]


def test_twenty_concurrent_only_if_absent_one_wins(srv, c):
    key = f"cas0:{uid()}"
    results = _race(srv, key, {"if-version": 0})
    assert sorted(r.status_code for r in results) == [201] + [409] * 19
    got = ok_body(c.get(path(key)))["data"]
    assert got["version"] == 1
    # once present, if-version 0 keeps failing
    error_body(c.put(path(key), json={"value": 1, "if-version": 0}), 409, "version_conflict")
    assert ok_body(c.get(path(key)))["data"]["version"] == 1


def test_concurrent_unconditional_sets_each_count(srv, c):
    key = f"plain:{uid()}"
    results = _race(srv, key, {})
    assert all(r.status_code in (200, 201) for r in results)
    assert [r.status_code for r in results].count(201) == 1
    assert sorted(r.json()["data"]["version"] for r in results) == list(range(1, 21))
    assert ok_body(c.get(path(key)))["data"]["version"] == 20


# -- isolation -----------------------------------------------------------------------------
def test_another_workspaces_key_is_indistinguishable_from_a_missing_one(srv, c):
    key = f"secret:{uid()}"
    with srv.client("other") as other:
        ok_body(other.put(path(key, "ws-other"), json={"value": {"pin": 1234}}), 201)

        missing = c.get(path(f"never:{uid()}"))
        error_body(missing, 404)
        for r in (c.get(path(key, "ws-other")),                 # their workspace's route
                  c.get(path(key, "ws-other"), params={"resolve": "true"}),
                  c.get(path(key)),                             # the same key in ours
                  c.delete(path(key, "ws-other")),
                  c.put(path(key, "ws-other"), json={"value": "overwrite"}),
                  c.get(path(f"never:{uid()}", "ws-other"))):
            assert r.status_code == 404
            assert r.content == missing.content
        assert c.get("/v1/ws-other/kv").content == missing.content

        # untouched, and our own listing never shows it
        got = ok_body(other.get(path(key, "ws-other")))["data"]
        assert got["value"] == {"pin": 1234} and got["version"] == 1
        assert ok_body(c.get(KV, params={"prefix": "secret:"}))["data"]["items"] == []


# -- bad input: 400/413 with nothing written -----------------------------------------------
BIG = "x" * 262_143          # 262,145 bytes once JSON-encoded (quotes)


def _bad_puts(key: str):
    k = quote(key, safe="")
    return [
        ("not json", f"{KV}/{k}", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ("empty body", f"{KV}/{k}", {"content": b""}, 400),
        ("missing value", f"{KV}/{k}", {"json": {"ttl": 60}}, 400),
        ("body not an object", f"{KV}/{k}", {"json": [1, 2]}, 400),
        ("unknown field", f"{KV}/{k}", {"json": {"value": 1, "tll": 5}}, 400),
        ("value over limit", f"{KV}/{k}", {"json": {"value": BIG}}, 413),
        ("empty key", f"{KV}/", {"json": {"value": 1}}, 400),
        ("key over 512", f"{KV}/{'k' * 513}", {"json": {"value": 1}}, 400),
        ("control char", f"{KV}/{k}%01", {"json": {"value": 1}}, 400),
        ("trailing newline", f"{KV}/{k}%0A", {"json": {"value": 1}}, 400),
        ("inner newline", f"{KV}/{k}%0Ab", {"json": {"value": 1}}, 400),
        ("DEL char", f"{KV}/{k}%7F", {"json": {"value": 1}}, 400),
        ("ttl 0", f"{KV}/{k}", {"json": {"value": 1, "ttl": 0}}, 400),
        ("ttl -5", f"{KV}/{k}", {"json": {"value": 1, "ttl": -5}}, 400),
        ("ttl abc", f"{KV}/{k}", {"json": {"value": 1, "ttl": "abc"}}, 400),
        ("ttl float", f"{KV}/{k}", {"json": {"value": 1, "ttl": 1.5}}, 400),
        ("ttl bool", f"{KV}/{k}", {"json": {"value": 1, "ttl": True}}, 400),
        ("if-version -1", f"{KV}/{k}", {"json": {"value": 1, "if-version": -1}}, 400),
        ("if-version str", f"{KV}/{k}", {"json": {"value": 1, "if-version": "1"}}, 400),
    ]


def test_bad_puts_are_clear_400s_and_write_nothing(srv, c):
    key = f"bad:{uid()}"
    before = kv_total(c)
    for name, url, kw, status in _bad_puts(key):
        r = c.put(url, **kw)
        err = error_body(r, status)
        assert len(err["message"]) > 10, (name, err)
        assert kv_total(c) == before, name
    error_body(c.get(path(key)), 404)
    # the error messages say what is wrong
    msgs = {name: c.put(url, **kw).json()["error"]["message"]
            for name, url, kw, _ in _bad_puts(key)}
    assert "262,144" in msgs["value over limit"]
    assert "512" in msgs["key over 512"] and "512" in msgs["empty key"]
    assert "control" in msgs["control char"]
    assert "ttl" in msgs["ttl abc"] and "ttl" in msgs["ttl 0"] and "ttl" in msgs["ttl -5"]
    assert "JSON" in msgs["not json"]
    assert kv_total(c) == before


def test_a_trailing_newline_never_reaches_the_key_without_it(c):
    key = f"nl:{uid()}"
    ok_body(c.put(path(key), json={"value": "kept"}), 201)
    error_body(c.put(path(key + "\n"), json={"value": "clobbered"}), 400)
    error_body(c.get(path(key + "\n")), 400)
    error_body(c.delete(path(key + "\n")), 400)
    got = ok_body(c.get(path(key)))["data"]
    assert (got["value"], got["version"]) == ("kept", 1)


def test_limits_themselves_are_accepted(c):
    key = "k" * 512
    ok_body(c.put(path(key), json={"value": "x" * 262_142}), 201)      # exactly 262,144 bytes
    got = ok_body(c.get(path(key)))["data"]
    assert len(got["value"]) == 262_142
    ok_body(c.delete(path(key)))


def test_no_body_route_without_key_is_not_a_server_error(srv, c):
    r = c.put(KV, json={"value": 1})
    assert 400 <= r.status_code < 500
    r = c.get(f"{KV}/")
    error_body(r, 400)
    r = c.delete(f"{KV}/")
    error_body(r, 400)
    assert internal_errors(srv) == []


def test_scopes_are_enforced(srv, c):
    key = f"scoped:{uid()}"
    with srv.client("read") as reader:
        error_body(reader.put(path(key), json={"value": 1}), 403)
        ok_body(c.put(path(key), json={"value": 1}), 201)
        assert ok_body(reader.get(path(key)))["data"]["value"] == 1
        error_body(reader.delete(path(key)), 403)
    with srv.client(None) as anon:
        error_body(anon.get(path(key)), 401)


def test_bad_input_through_the_remote_cli_exits_1_and_writes_nothing(srv, c, tmp_path):
    env = srv.env("admin")
    key = f"clibad:{uid()}"
    before = kv_total(c)
    cases = [
        ("not json", ["kv", "set", key, "{not json"]),
        ("value over limit", ["kv", "set", key, "-"]),
        ("empty key", ["kv", "set", "", "1"]),
        ("key over 512", ["kv", "set", "k" * 513, "1"]),
        ("control char", ["kv", "set", f"{key}\x01", "1"]),
        ("ttl 0", ["kv", "set", key, "1", "--ttl", "0"]),
        ("ttl -5", ["kv", "set", key, "1", "--ttl", "-5"]),
        ("ttl abc", ["kv", "set", key, "1", "--ttl", "abc"]),
        ("if-version abc", ["kv", "set", key, "1", "--if-version", "abc"]),
    ]
    big = json.dumps(BIG).encode()
    for name, args in cases:
        proc = cli(*args, "--format", "json", env=env, check=False,
                   stdin=big if args[-1] == "-" else None)
        # A malformed option value is a usage error (exit 2, click's message naming the
        # option); everything the server judges is a user error (exit 1).
        expected = (1, 2) if name.startswith(("ttl", "if-version")) else (1,)
        assert proc.returncode in expected, (name, proc.returncode, proc.stderr)
        assert proc.stdout == b"", name
        if proc.returncode == 2:
            assert b"Invalid value" in proc.stderr, name
            assert kv_total(c) == before, name
            continue
        err = json.loads(proc.stderr)["error"]
        assert err["message"], name
        if name == "value over limit":
            assert err["code"] == "too_large"
        assert kv_total(c) == before, name
    # a missing VALUE is a usage error (exit 2), also writing nothing
    proc = cli("kv", "set", key, env=env, check=False)
    assert proc.returncode == 2 and b"VALUE" in proc.stderr
    assert kv_total(c) == before
    error_body(c.get(path(key)), 404)

    # and the good path through the same remote CLI works, stdin value included
    proc = cli("kv", "set", key, "-", "--format", "json", env=env,
               stdin=json.dumps({"from": "stdin"}).encode())
    assert json.loads(proc.stdout)["data"]["value"] == {"from": "stdin"}
    proc = cli("kv", "get", key, "--format", "json", env=env)
    assert json.loads(proc.stdout)["data"]["version"] == 1

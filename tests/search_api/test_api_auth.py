"""The 401 / 403 / 404 matrix against a real server.

No key or an unknown key: 401. A key without the scope: 403. A key of another workspace
asking for this workspace's resource, under either workspace's path: 404 with exactly
the bytes a random missing uri gets.
"""
from __future__ import annotations

import json
import uuid

import pytest

from server import error_body, ok_body, upload  # noqa: F401

WS = "/v1/ws-acme"
OTHER = "/v1/ws-other"

#: (method, path, query, json body) of every keyed route, with no uri of substance.
KEYED_ROUTES = [
    ("POST", "/resources", {}, None),
    ("GET", "/resources", {}, None),
    ("GET", "/resources/search", {"q": "x"}, None),
    ("GET", "/resources/by-uri", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, None),
    ("DELETE", "/resources/by-uri", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, None),
    ("GET", "/resources/content", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, None),
    ("GET", "/resources/url", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, None),
    ("GET", "/resources/search-index", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, None),
    ("POST", "/resources/search-index", {"uri": "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"}, {}),
    ("GET", "/workflows/wf-1/resources", {}, None),
    ("DELETE", "/workflows/wf-1/resources", {}, None),
    ("GET", "/usage", {}, None),
    ("PUT", "/slots/archive", {}, {"root": "reports/acme"}),
    ("GET", "/slots", {}, None),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _, _ in KEYED_ROUTES]


def random_uri(ws: str = "ws-acme") -> str:
    from ulid import ULID
    return f"res://v1/ws/{ws}/file/{ULID()}"


@pytest.fixture(scope="module")
def acme_rec(api_server):
    """A resource of ws-acme that the other workspace must not see."""
    with api_server.client("admin") as c:
        word = f"secret{uuid.uuid4().hex[:10]}"
        rec = ok_body(upload(c, f"{word} acme only\n".encode(),
                             {"filename": "acme.txt", "workflow-id": "wf-acme-secret"}), 201)["data"]
        rec["word"] = word
        return rec


def send(client, method, path, params, body, **kw):
    if body is not None:
        kw["json"] = body
    return client.request(method, path, params=params, **kw)


@pytest.mark.parametrize("method, path, params, body", KEYED_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("auth", [None, "Bearer rk_000000000000_nope", "Bearer nonsense",
                                  "Basic dXNlcjpwYXNz", "Bearer rk_", "bearer"],
                         ids=["no-key", "unknown-key", "malformed", "basic", "prefix-only",
                              "scheme-only"])
def test_missing_or_unknown_key_is_401(api_server, method, path, params, body, auth):
    with api_server.client(None) as anon:
        headers = {"Authorization": auth} if auth else {}
        r = send(anon, method, f"{WS}{path}", params, body, headers=headers)
        error_body(r, 401, "unauthorized")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize("method, path", [(m, p) for m, p, _, _ in KEYED_ROUTES],
                         ids=ROUTE_IDS)
def test_401_comes_before_parameter_checks(api_server, method, path):
    """No key and no parameters at all: still 401, never a 400 that answers first."""
    with api_server.client(None) as anon:
        error_body(anon.request(method, f"{WS}{path}"), 401, "unauthorized")


def test_wrong_secret_of_a_real_key_id_is_401(api_server):
    key_id = api_server.keys["admin"].split("_")[1]
    with api_server.client(f"rk_{key_id}_{'A' * 43}") as c:
        error_body(c.get(f"{WS}/resources"), 401, "unauthorized")
    with api_server.client(api_server.keys["admin"][:-1]) as c:
        error_body(c.get(f"{WS}/resources"), 401, "unauthorized")


def test_read_only_key_cannot_write(api_server, acme_rec):
    with api_server.client("admin") as admin:
        total = ok_body(admin.get(f"{WS}/resources"))["meta"]["total"]
    with api_server.client("read") as ro:
        ok_body(ro.get(f"{WS}/resources"))
        ok_body(ro.get(f"{WS}/resources/by-uri", params={"uri": acme_rec["uri"]}))
        error_body(upload(ro, b"nope", {"filename": "ro.txt"}), 403, "forbidden")
        error_body(upload(ro, b"\0" * 1_000_000, {"filename": "ro.bin"}), 403, "forbidden")
        error_body(ro.delete(f"{WS}/resources/by-uri", params={"uri": acme_rec["uri"]}), 403)
        error_body(ro.delete(f"{WS}/workflows/wf-acme-secret/resources"), 403)
        error_body(ro.post(f"{WS}/resources/search-index", params={"uri": acme_rec["uri"]},
                           json={"tags": ["x"]}), 403)
        error_body(ro.put(f"{WS}/slots/ro-slot", json={"root": "r"}), 403)
    with api_server.client("admin") as admin:
        assert ok_body(admin.get(f"{WS}/resources"))["meta"]["total"] == total
        rec = ok_body(admin.get(f"{WS}/resources/by-uri", params={"uri": acme_rec["uri"]}))
        assert rec["data"]["search-index"]["tags"] == []
    assert not list((api_server.home / "tmp").glob("*.part"))


def test_write_key_without_admin_can_persist_but_not_bind(api_server):
    with api_server.client("write") as w:
        rec = ok_body(upload(w, b"writer\n", {"filename": "w.txt"}), 201)["data"]
        ok_body(w.delete(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}))
        error_body(w.put(f"{WS}/slots/w-slot", json={"root": "r"}), 403, "forbidden")


#: The routes that take a uri, for the cross-workspace probes.
URI_ROUTES = [("GET", "/resources/by-uri", None), ("DELETE", "/resources/by-uri", None),
              ("GET", "/resources/content", None), ("GET", "/resources/url", None),
              ("GET", "/resources/search-index", None),
              ("POST", "/resources/search-index", {"tags": ["pwned"]})]


@pytest.mark.parametrize("method, path, body", URI_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in URI_ROUTES])
def test_other_workspace_sees_exactly_a_missing_resource(api_server, acme_rec, method, path,
                                                         body):
    with api_server.client("admin") as admin, api_server.client("other") as other:
        baseline = send(admin, method, f"{WS}{path}", {"uri": random_uri()}, body)
        assert baseline.status_code == 404
        probes = [
            send(other, method, f"{OTHER}{path}", {"uri": acme_rec["uri"]}, body),
            send(other, method, f"{WS}{path}", {"uri": acme_rec["uri"]}, body),
            send(other, method, f"{WS}{path}", {"uri": random_uri()}, body),
            send(other, method, f"{OTHER}{path}", {"uri": random_uri("ws-other")}, body),
            send(admin, method, f"{OTHER}{path}", {"uri": random_uri("ws-other")}, body),
        ]
        for r in probes:
            assert r.status_code == 404
            assert r.content == baseline.content
            assert r.headers["content-type"] == baseline.headers["content-type"]
            assert r.headers["content-length"] == baseline.headers["content-length"]
        # and nothing happened to the resource
        env = ok_body(admin.get(f"{WS}/resources/by-uri", params={"uri": acme_rec["uri"]}))
        assert env["data"]["search-index"]["tags"] == []
        assert env["data"]["version"] == 1


@pytest.mark.parametrize("method, path, params, body", KEYED_ROUTES, ids=ROUTE_IDS)
def test_other_workspace_path_is_404_on_every_route(api_server, method, path, params, body):
    with api_server.client("other") as other, api_server.client("admin") as admin:
        r = send(other, method, f"{WS}{path}", params, body)
        baseline = admin.get(f"{WS}/resources/by-uri", params={"uri": random_uri()})
        assert r.status_code == 404
        assert r.content == baseline.content
        # a workspace nobody has: the same answer
        r = send(admin, method, f"/v1/ws-nobody{path}", params, body)
        assert r.status_code == 404 and r.content == baseline.content


def test_other_workspace_lists_and_searches_only_its_own(api_server, acme_rec):
    with api_server.client("other") as other:
        env = ok_body(other.get(f"{OTHER}/resources/search", params={"q": acme_rec["word"]}))
        assert env["data"]["items"] == [] and env["meta"]["total"] == 0
        env = ok_body(other.get(f"{OTHER}/resources"))
        assert acme_rec["uri"] not in [i["uri"] for i in env["data"]["items"]]
        env = ok_body(other.get(f"{OTHER}/workflows/wf-acme-secret/resources"))
        assert env["data"]["items"] == []
        env = ok_body(other.delete(f"{OTHER}/workflows/wf-acme-secret/resources"))
        assert env["data"]["deleted"] == []
        ok_body(other.get(f"{OTHER}/usage"))
        rec = ok_body(upload(other, b"other's\n", {"filename": "o.txt"}, ws="ws-other"), 201)
        assert rec["data"]["workspace"] == "ws-other"
    with api_server.client("admin") as admin:
        ok_body(admin.get(f"{WS}/resources/by-uri", params={"uri": acme_rec["uri"]}))
        error_body(admin.get(f"{WS}/resources/by-uri", params={"uri": rec["data"]["uri"]}), 404)


def test_signed_url_of_other_workspace_not_issued(api_server, acme_rec):
    with api_server.client("other") as other:
        r = other.get(f"{OTHER}/resources/url", params={"uri": acme_rec["uri"]})
        assert r.status_code == 404
        assert json.loads(r.content) == {"error": {"code": "not_found",
                                                   "message": "resource not found"}}

"""The Breyta CLI face (/api/...) against a real `resources serve`.

Requests are shaped like the CLI's: Bearer key, X-Breyta-Workspace, X-Breyta-Client,
query strings with sorted keys and percent-encoded values (`,` as %2C, `res://` as
res%3A%2F%2F, space as +), workflow path segments percent-encoded twice.
"""
from __future__ import annotations

import hashlib
import json
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from server import internal_errors, ok_body, start_server, stop_server, upload

WS = "ws-acme"
ITEM_FIELDS = {"uri", "type", "displayName", "filename", "contentType", "sizeBytes", "score",
               "snippet", "tags", "sourceLabel", "flowSlug", "workflowId", "stepId",
               "storageBackend", "storageRoot", "pathUnderRoot", "tier", "createdAt",
               "updatedAt", "webUrl"}
LIST_KEYS = {"items", "total", "limit", "offset", "nextCursor"}
RETAINED_MAX = 300_000
KEYS = {"admin": (WS, "resources.read,resources.write,workspace.admin"),
        "read": (WS, "resources.read"),
        "other": ("ws-other", "resources.read,resources.write,workspace.admin")}


def qs(params: dict) -> str:
    """The CLI's query string: sorted keys, every value percent-encoded, space as +."""
    return urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote_plus)


def twice(segment: str, safe: str = "") -> str:
    return urllib.parse.quote(urllib.parse.quote(segment, safe=safe), safe=safe)


class Cli:
    """What `breyta resources ...` sends."""

    def __init__(self, server, key: str | None = "admin", workspace: str = WS) -> None:
        headers = {"X-Breyta-Workspace": workspace, "X-Breyta-Client": "cli"}
        if key is not None:
            headers["Authorization"] = f"Bearer {server.keys.get(key, key)}"
        self.http = httpx.Client(base_url=server.base, headers=headers, timeout=30)

    def get(self, path: str, params: dict | None = None) -> httpx.Response:
        return self.http.get(f"{path}?{qs(params)}" if params else path)

    def delete(self, path: str, params: dict) -> httpx.Response:
        return self.http.delete(f"{path}?{qs(params)}")

    def post(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, content=json.dumps(body),
                              headers={"Content-Type": "application/json"})

    def put(self, url: str, data: bytes) -> httpx.Response:
        return self.http.put(url, content=data,
                             headers={"Content-Type": "application/octet-stream"})


def ok(r: httpx.Response) -> dict:
    assert 200 <= r.status_code < 300, f"{r.status_code}: {r.text[:500]}"
    return r.json()


def err(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"ok", "error"} and body["ok"] is False, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body


def page(r: httpx.Response) -> dict:
    body = ok(r)
    assert LIST_KEYS <= set(body), body
    for item in body["items"]:
        assert set(item) == ITEM_FIELDS, item
    return body


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("breyta"), keys=KEYS,
                          extra_env={"RESOURCES_RETAINED_MAX_BYTES": str(RETAINED_MAX)})
    word = f"zq{uuid.uuid4().hex[:8]}"
    server.word = word
    with server.client("admin") as c:
        def put(body: bytes, spec: dict) -> dict:
            return ok_body(upload(c, body, spec), 201)["data"]
        server.both = put(f"{word}alpha {word}beta report\n".encode(),
                          {"filename": "both.txt", "workflow-id": "wf-b", "step": "step:a/b",
                           "tags": ["t1"]})
        server.alpha = put(f"{word}alpha only\n".encode(),
                           {"filename": "alpha.txt", "workflow-id": "wf-b", "step": "step:a/b"})
        server.beta = put(f"{word}beta only\n".encode(),
                          {"filename": "beta.txt", "workflow-id": "wf-b", "step": "other"})
        server.result = put(json.dumps({"answer": 42, "word": word}).encode(),
                            {"type": "kv", "workflow-id": "wf-b", "step": "other"})

    def bulk(i: int) -> None:     # more than one core page (100); parallel: group commits
        with server.client("admin") as c:
            ok_body(upload(c, f"bulk {i}\n".encode(),
                           {"filename": f"bulk-{i}.txt", "workflow-id": "wf-many"}), 201)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bulk, range(105)))
    yield server
    assert not internal_errors(server), internal_errors(server)
    stop_server(server)


# -- auth and errors ---------------------------------------------------------------------------
def test_no_key_is_401_bad_key_is_401(srv):
    err(Cli(srv, key=None).get("/api/resources"), 401, "unauthorized")
    err(Cli(srv, key="rk_nope_nope").get("/api/resources/search", {"q": "x"}), 401)
    r = Cli(srv, key=None).get("/api/resources/by-uri", {"uri": srv.both["uri"]})
    err(r, 401)
    assert r.headers.get("www-authenticate") == "Bearer"


def test_other_workspace_header_is_the_404_of_a_missing_resource(srv):
    from ulid import ULID
    missing = Cli(srv).get("/api/resources/by-uri", {"uri": f"res://v1/ws/{WS}/file/{ULID()}"})
    err(missing, 404, "not_found")
    foreign = Cli(srv, workspace="ws-other").get("/api/resources/by-uri", {"uri": srv.both["uri"]})
    err(foreign, 404)
    assert foreign.content == missing.content
    # the other workspace's key asking for ws-acme: the same 404, on every kind of route
    other = Cli(srv, key="other", workspace=WS)
    assert other.get("/api/resources/by-uri", {"uri": srv.both["uri"]}).content == missing.content
    assert other.get("/api/resources").content == missing.content
    err(other.post("/api/files/uploads/init", {"filename": "x.txt"}), 404)
    # ... while its own workspace answers (empty)
    assert page(Cli(srv, key="other", workspace="ws-other").get("/api/resources"))["total"] == 0


def test_scopes_and_error_shapes(srv):
    reader = Cli(srv, key="read")
    err(reader.delete("/api/files/by-uri", {"uri": srv.both["uri"]}), 403, "forbidden")
    err(reader.post("/api/resources/search-index",
                    {"op": "clear", "uri": srv.both["uri"]}), 403)
    ok(reader.post("/api/resources/search-index", {"op": "show", "uri": srv.both["uri"]}))
    cli = Cli(srv)
    err(cli.get("/api/resources", {"limit": "1001"}), 400, "invalid_spec")
    err(cli.get("/api/resources/search", {"q": "x", "limit": "101"}), 400)
    err(cli.get("/api/resources/search", {"q": "x", "mode": "psychic"}), 400)
    err(cli.get("/api/resources/search", {"q": "(unclosed"}), 400, "invalid_query")
    err(cli.get("/api/resources/by-uri"), 400)
    err(cli.get("/api/nothing/here"), 404, "not_found")
    r = cli.http.patch("/api/resources")
    err(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    err(cli.http.post("/api/resources/search-index", content=b"{nope"), 400)


# -- list, search, get, read, url -----------------------------------------------------------------
def test_list_shape_filters_and_prefix(srv):
    cli = Cli(srv)
    body = page(cli.get("/api/resources", {"types": "file,result", "limit": "5"}))
    assert body["limit"] == 5 and body["offset"] == 0 and len(body["items"]) == 5
    assert body["total"] >= 109 and body["nextCursor"]
    first = body["items"][0]
    assert first["webUrl"].startswith(srv.base) and first["sizeBytes"] > 0
    assert first["score"] is None and first["snippet"] is None
    nxt = page(cli.get("/api/resources", {"types": "file,result", "limit": "5",
                                          "cursor": body["nextCursor"]}))
    assert not {i["uri"] for i in nxt["items"]} & {i["uri"] for i in body["items"]}
    # default limit 10
    assert len(page(cli.get("/api/resources"))["items"]) == 10
    # prefix: a uri prefix, as an index query
    results = page(cli.get("/api/resources", {"prefix": f"res://v1/ws/{WS}/result/"}))
    assert [i["uri"] for i in results["items"]] == [srv.result["uri"]] and results["total"] == 1
    exact = page(cli.get("/api/resources", {"prefix": srv.both["uri"]}))
    assert [i["uri"] for i in exact["items"]] == [srv.both["uri"]]
    assert page(cli.get("/api/resources", {"prefix": "res://v1/ws/ws-other/"}))["total"] == 0
    # tags (csv), accept, exclude-tier, query
    tagged = page(cli.get("/api/resources", {"tags": "t1"}))
    assert [i["uri"] for i in tagged["items"]] == [srv.both["uri"]]
    assert tagged["items"][0]["tags"] == ["t1"]
    js = page(cli.get("/api/resources", {"accept": "application/json,image/*"}))
    assert [i["uri"] for i in js["items"]] == [srv.result["uri"]]
    assert page(cli.get("/api/resources", {"exclude-tier": "retained"}))["total"] == 0
    q = page(cli.get("/api/resources", {"query": f"{srv.word}alpha only"}))
    assert [i["uri"] for i in q["items"]] == [srv.alpha["uri"]]
    item = q["items"][0]
    assert item["workflowId"] == "wf-b" and item["stepId"] == "step:a/b"
    assert item["type"] == "file" and item["tier"] == "retained"
    assert item["storageBackend"] == "platform" and item["storageRoot"] is None


def test_list_limit_above_the_core_page(srv):
    cli = Cli(srv)
    many = page(cli.get("/api/resources/workflow/wf-many", {"limit": "1000"}))
    assert len(many["items"]) == 105 and many["total"] == 105 and many["nextCursor"] is None
    assert len({i["uri"] for i in many["items"]}) == 105
    big = page(cli.get("/api/resources", {"limit": "105"}))
    assert len(big["items"]) == 105 and big["nextCursor"] and big["total"] >= 109
    rest = page(cli.get("/api/resources", {"limit": "1000", "cursor": big["nextCursor"]}))
    assert len(rest["items"]) == big["total"] - 105
    assert not {i["uri"] for i in rest["items"]} & {i["uri"] for i in big["items"]}
    skipped = page(cli.get("/api/resources/workflow/wf-many", {"limit": "100", "offset": "50"}))
    assert [i["uri"] for i in skipped["items"]] == [i["uri"] for i in many["items"][50:]]
    assert skipped["offset"] == 50 and skipped["nextCursor"] is None


def test_search_keyword_modes_offset_and_mode(srv):
    cli = Cli(srv)
    w = srv.word
    base = {"content-sources": "file,result"}
    q = f"{w}alpha {w}beta"
    all_ = page(cli.get("/api/resources/search", {**base, "q": q, "keyword-mode": "all"}))
    assert {i["uri"] for i in all_["items"]} == {srv.both["uri"]}
    any_ = page(cli.get("/api/resources/search", {**base, "q": q, "keyword-mode": "any"}))
    assert {i["uri"] for i in any_["items"]} == {srv.both["uri"], srv.alpha["uri"], srv.beta["uri"]}
    balanced = page(cli.get("/api/resources/search", {**base, "q": q}))
    assert balanced["items"][0]["uri"] == srv.both["uri"]          # most words first
    assert balanced["total"] == 3 and balanced["mode"] == "lexical"
    top = balanced["items"][0]
    assert isinstance(top["score"], float) and top["score"] > 0 and "<b>" in top["snippet"]
    second = page(cli.get("/api/resources/search", {**base, "q": q, "limit": "1", "offset": "1"}))
    assert [i["uri"] for i in second["items"]] == [balanced["items"][1]["uri"]]
    assert second["offset"] == 1 and second["limit"] == 1
    # These servers run with RESOURCES_SEMANTIC=off: never a silent lexical answer.
    off = cli.get("/api/resources/search", {**base, "q": q, "mode": "semantic"})
    assert off.status_code == 501 and "RESOURCES_SEMANTIC" in off.text
    # type narrows; a result is found by its JSON content
    res = page(cli.get("/api/resources/search", {**base, "q": w, "type": "result"}))
    assert [i["uri"] for i in res["items"]] == [srv.result["uri"]]


def test_get_read_and_url(srv):
    cli = Cli(srv)
    rec = ok(cli.get("/api/resources/by-uri", {"uri": srv.both["uri"]}))
    assert rec["uri"] == srv.both["uri"] and rec["displayName"] == "both.txt"
    assert rec["sizeBytes"] == srv.both["size"] and rec["sha256"] == srv.both["sha256"]
    assert rec["webUrl"] == srv.both["webUrl"] and rec["stepId"] == "step:a/b"
    assert "searchIndex" in rec and "includeRawContent" in rec["searchIndex"]
    r = cli.get("/api/resources/content", {"uri": srv.both["uri"], "view": "summary",
                                           "limit": "25"})
    assert r.status_code == 200 and r.content.startswith(srv.word.encode())
    assert r.headers["content-type"].startswith("text/plain")
    value = cli.get("/api/resources/content", {"uri": srv.result["uri"], "view": "summary",
                                               "limit": "25"})
    assert value.headers["content-type"].startswith("application/json")
    assert value.json() == {"answer": 42, "word": srv.word}
    url = ok(cli.get("/api/resources/url", {"uri": srv.both["uri"], "ttl": "3600"}))
    assert set(url) == {"url", "expiresAt"} and url["expiresAt"].endswith("Z")
    assert httpx.get(url["url"], timeout=10).content.startswith(srv.word.encode())
    err(cli.get("/api/resources/url", {"uri": srv.both["uri"], "ttl": "5"}), 400)


def test_workflow_list_and_double_encoded_step(srv):
    cli = Cli(srv)
    wf = page(cli.get("/api/resources/workflow/wf-b", {"limit": "10"}))
    assert wf["total"] == 4
    expected = {srv.both["uri"], srv.alpha["uri"]}
    for step in (twice("step:a/b", safe=":"), twice("step:a/b")):   # step:a%252Fb, step%253A...
        r = cli.get(f"/api/resources/workflow/{twice('wf-b')}/step/{step}", {"limit": "10"})
        got = page(r)
        assert {i["uri"] for i in got["items"]} == expected, step
        assert all(i["stepId"] == "step:a/b" for i in got["items"])
    assert page(cli.get("/api/resources/workflow/wf-b/step/step%253Aa"))["total"] == 0
    assert page(cli.get("/api/resources/workflow/no-such-run"))["total"] == 0


# -- search-index ------------------------------------------------------------------------------
def _found(cli: Cli, q: str) -> set[str]:
    return {i["uri"] for i in page(cli.get("/api/resources/search",
                                            {"content-sources": "file,result", "q": q}))["items"]}


def test_search_index_update_object_and_string_then_clear(srv):
    cli = Cli(srv)
    uri = srv.beta["uri"]
    new1, new2 = f"{srv.word}neworange", f"{srv.word}newlemon"
    shown = ok(cli.post("/api/resources/search-index", {"op": "show", "uri": uri, "full": True}))
    assert shown["searchIndex"] == {"text": None, "tags": [], "sourceLabel": None,
                                    "includeRawContent": None}
    assert shown["indexedText"].startswith(f"{srv.word}beta")
    assert shown["resource"]["uri"] == uri
    up = ok(cli.post("/api/resources/search-index", {
        "op": "update", "uri": uri, "full": False,
        "searchIndex": {"text": new1, "tags": ["fruit"], "sourceLabel": "Fruit import"}}))
    assert up["searchIndex"]["text"] == new1 and up["sourceLabel"] == "Fruit import"
    assert "fruit" in up["indexedTags"]
    assert _found(cli, new1) == {uri}                        # searchable at once
    assert uri not in _found(cli, f"{srv.word}beta only")    # text replaced the content
    up2 = ok(cli.post("/api/resources/search-index", {
        "op": "update", "uri": uri, "searchIndex": json.dumps({"text": new2,
                                                               "includeRawContent": True})}))
    assert up2["searchIndex"]["text"] == new2 and up2["searchIndex"]["tags"] == ["fruit"]
    assert _found(cli, new2) == {uri} and _found(cli, new1) == set()
    bad = err(cli.post("/api/resources/search-index", {
        "op": "update", "uri": uri, "searchIndex": "{:text \"edn\"}"}), 400)
    assert "JSON" in bad["error"]["message"]
    err(cli.post("/api/resources/search-index", {
        "op": "update", "uri": uri, "searchIndex": {"colour": "red"}}), 400)
    cleared = ok(cli.post("/api/resources/search-index", {"op": "clear", "uri": uri}))
    assert cleared["searchIndex"]["text"] is None and cleared["sourceLabel"] != "Fruit import"
    assert _found(cli, new2) == set() and uri in _found(cli, f"{srv.word}beta only")
    again = ok(cli.post("/api/resources/search-index", {"op": "reindex", "uri": uri}))
    assert again["op"] == "reindex" and uri in _found(cli, f"{srv.word}beta only")
    err(cli.post("/api/resources/search-index", {"op": "explode", "uri": uri}), 400)


# -- upload and delete ----------------------------------------------------------------------------
def _upload(cli: Cli, filename: str, data: bytes, **extra) -> tuple[dict, dict]:
    init = ok(cli.post("/api/files/uploads/init",
                       {"filename": filename, "content-type": "text/plain", **extra}))
    assert set(init) == {"uri", "upload-session-id", "upload-url"}
    assert init["upload-url"] == (f"{cli.http.base_url}".rstrip("/") +
                                  f"/api/files/uploads/direct?{qs({'uri': init['uri']})}")
    put = cli.put(f"/api/files/uploads/direct?{qs({'uri': init['uri']})}", data)
    assert ok(put)["size-bytes"] == len(data)
    done = ok(cli.post("/api/files/uploads/complete",
                       {"uri": init["uri"], "upload-session-id": init["upload-session-id"]}))
    return init, done


def test_upload_three_steps_readable_over_both_faces(srv):
    cli = Cli(srv)
    folder = f"docs/{uuid.uuid4().hex[:6]}"
    data = b"uploaded notes " + srv.word.encode() + b"upl\n" * 50
    init, done = _upload(cli, "notes.txt", data, folder=folder)
    assert done == {"uri": init["uri"], "content-type": "text/plain", "size-bytes": len(data)}
    rec = ok(cli.get("/api/resources/by-uri", {"uri": init["uri"]}))
    assert rec["type"] == "file" and rec["tier"] == "retained" and rec["version"] == 1
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["path"] == f"workspaces/{WS}/persist/_upload/{folder}/notes.txt"
    assert rec["sourceLabel"] == "upload"
    assert cli.get("/api/resources/content", {"uri": init["uri"]}).content == data
    with srv.client("admin") as v1:
        v1rec = ok_body(v1.get(f"/v1/{WS}/resources/by-uri", params={"uri": init["uri"]}))["data"]
        assert v1rec["sha256"] == rec["sha256"] and v1rec["size"] == len(data)
        assert v1.get(f"/v1/{WS}/resources/content", params={"uri": init["uri"]}).content == data
    assert init["uri"] in _found(cli, f"{srv.word}upl")
    # a retried complete answers the same resource
    again = ok(cli.post("/api/files/uploads/complete",
                        {"uri": init["uri"], "upload-session-id": init["upload-session-id"]}))
    assert again["uri"] == init["uri"]
    # the same folder and filename again: 409 without replace-existing ...
    err(cli.post("/api/files/uploads/init", {"filename": "notes.txt", "folder": folder}), 409,
        "conflict")
    # ... with it: same uri, version + 1, new bytes
    new = b"second version\n"
    init2, done2 = _upload(cli, "notes.txt", new, folder=folder, **{"replace-existing": True})
    assert init2["uri"] == init["uri"] and done2["size-bytes"] == len(new)
    rec2 = ok(cli.get("/api/resources/by-uri", {"uri": init["uri"]}))
    assert rec2["version"] == 2 and rec2["sha256"] == hashlib.sha256(new).hexdigest()
    assert cli.get("/api/resources/content", {"uri": init["uri"]}).content == new
    # delete: blob, record and index entry, on both faces
    gone = ok(cli.delete("/api/files/by-uri", {"uri": init["uri"]}))
    assert gone == {"uri": init["uri"], "deleted": True}
    err(cli.get("/api/resources/by-uri", {"uri": init["uri"]}), 404)
    with srv.client("admin") as v1:
        assert v1.get(f"/v1/{WS}/resources/by-uri", params={"uri": init["uri"]}).status_code == 404
    assert init["uri"] not in _found(cli, "second version")
    assert not (srv.home / rec["path"]).exists()


def test_upload_never_completed_leaves_nothing_and_is_swept(srv):
    cli = Cli(srv)
    before = page(cli.get("/api/resources"))["total"]
    folder = f"pending/{uuid.uuid4().hex[:6]}"
    init = ok(cli.post("/api/files/uploads/init", {"filename": "p.bin", "folder": folder}))
    err(cli.post("/api/files/uploads/complete",
                 {"uri": init["uri"], "upload-session-id": init["upload-session-id"]}), 409)
    ok(cli.put(f"/api/files/uploads/direct?{qs({'uri': init['uri']})}", b"\x00\x01staged"))
    staged = list((srv.home / "upload-sessions").rglob("*"))
    assert any(p.is_file() for p in staged)
    err(cli.get("/api/resources/by-uri", {"uri": init["uri"]}), 404)
    assert page(cli.get("/api/resources"))["total"] == before
    assert not (srv.home / "workspaces" / WS / "persist" / "_upload" / folder).exists()
    # a wrong session id, another workspace's session: not found
    err(cli.post("/api/files/uploads/complete",
                 {"uri": init["uri"], "upload-session-id": "0" * 32}), 404)
    # sessions expire; the next init sweeps them with their staged bytes
    srv.advance(2 * 3600)
    later = ok(cli.post("/api/files/uploads/init", {"filename": "later.txt"}))
    assert not [p for p in (srv.home / "upload-sessions").rglob("*") if p.is_file()]
    err(cli.put(f"/api/files/uploads/direct?{qs({'uri': init['uri']})}", b"x"), 404)
    err(cli.post("/api/files/uploads/complete",
                 {"uri": init["uri"], "upload-session-id": init["upload-session-id"]}), 404)
    assert later["uri"] != init["uri"]


def test_upload_over_the_tier_limit_is_413_and_keeps_nothing(srv):
    cli = Cli(srv)
    init = ok(cli.post("/api/files/uploads/init", {"filename": "big.bin"}))
    url = f"/api/files/uploads/direct?{qs({'uri': init['uri']})}"
    err(cli.put(url, b"x" * (RETAINED_MAX + 1)), 413, "too_large")

    def chunks():                       # no Content-Length: the streamed limit
        for _ in range(4):
            yield b"y" * 100_000
    r = cli.http.put(url, content=chunks())
    err(r, 413)
    err(cli.post("/api/files/uploads/complete",
                 {"uri": init["uri"], "upload-session-id": init["upload-session-id"]}), 409)
    err(cli.post("/api/files/uploads/init", {"filename": "../evil"}), 400)
    err(cli.post("/api/files/uploads/init", {"content-type": "text/plain"}), 400)


def test_openapi_registers_the_api_paths(srv):
    doc = httpx.get(f"{srv.base}/openapi.json", timeout=10).json()
    for path in ("/api/resources", "/api/resources/search", "/api/resources/by-uri",
                 "/api/resources/content", "/api/resources/url", "/api/resources/workflow/{wf}",
                 "/api/resources/workflow/{wf}/step/{step}", "/api/resources/search-index",
                 "/api/files/by-uri", "/api/files/uploads/init", "/api/files/uploads/direct",
                 "/api/files/uploads/complete"):
        assert path in doc["paths"], path
    from openapi_spec_validator import validate
    validate(doc)

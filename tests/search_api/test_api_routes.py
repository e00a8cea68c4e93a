"""Every HTTP route against a real server: success paths, each documented error code and
the two envelope shapes."""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from server import error_body, internal_errors, ok_body, upload  # noqa: F401

WS = "/v1/ws-acme"
MISSING = "res://v1/ws/ws-acme/file/01J0000000000000000000000Z"


@pytest.fixture(scope="module")
def c(api_server):
    with api_server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def reader(api_server):
    with api_server.client("read") as client:
        yield client


def uid() -> str:
    return uuid.uuid4().hex[:12]


def persist(c, body: bytes, status: int = 201, **spec) -> dict:
    return ok_body(upload(c, body, spec), status)["data"]


# -- envelopes --------------------------------------------------------------------------
def test_envelope_shapes_are_pinned(c):
    body = b"envelope pin\n"
    r = upload(c, body, {"filename": "pin.txt"})
    env = ok_body(r, 201)
    rec = env["data"]
    for key in ("uri", "id", "workspace", "type", "tier", "display-name", "filename",
                "content-type", "size", "sha256", "storage-backend", "storage-root",
                "path-under-root", "path", "slot", "flow", "step", "workflow-id", "tags",
                "source-label", "created-at", "updated-at", "expires-at", "version",
                "content-indexed", "content-truncated", "webUrl"):
        assert key in rec, key
    assert rec["sha256"] == hashlib.sha256(body).hexdigest()
    assert rec["size"] == len(body)
    assert env["meta"]["webUrl"] == rec["webUrl"]
    assert rec["created-at"].endswith("Z")
    # A failure is {"error": {"code", "message"}} and nothing else.
    r = c.get(f"{WS}/resources/by-uri", params={"uri": MISSING})
    assert r.json() == {"error": {"code": "not_found", "message": "resource not found"}}
    # Unknown routes and methods answer in the same shape.
    error_body(c.get("/v1/ws-acme/nope"), 404, "not_found")
    error_body(c.patch(f"{WS}/resources"), 405)


def test_healthz_and_openapi_need_no_key(api_server):
    with api_server.client(None) as anon:
        env = ok_body(anon.get("/healthz"))
        assert env["data"]["ok"] is True
        doc = anon.get("/openapi.json")
        assert doc.status_code == 200
        assert doc.json()["openapi"].startswith("3.")


# -- persist ----------------------------------------------------------------------------
def test_persist_new_then_get_by_uri(c):
    rec = persist(c, b"alpha beta\n", filename="ab.txt", tags=["t1"], flow="f", step="s")
    assert rec["type"] == "file" and rec["tier"] == "retained" and rec["version"] == 1
    assert rec["path"].startswith("workspaces/ws-acme/persist/f/s/")
    assert rec["path"].endswith("/ab.txt")
    assert rec["storage-root"] is None and rec["path-under-root"] is None
    env = ok_body(c.get(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}))
    assert env["data"]["uri"] == rec["uri"]
    assert env["meta"]["webUrl"] == rec["webUrl"]


def test_persist_kv_makes_a_result(c):
    rec = persist(c, json.dumps({"a": [1, 2]}).encode(), type="kv")
    assert rec["type"] == "result" and rec["content-type"] == "application/json"
    assert "/result/" in rec["uri"]


@pytest.mark.parametrize("spec_header, code", [
    ("{not json", None),
    (json.dumps({"type": "bogus"}), "invalid_spec"),
    (json.dumps({"tier": "forever"}), "invalid_spec"),
    (json.dumps({"unknown-field": 1}), "invalid_spec"),
    (json.dumps({"path": "../escape", "filename": "x.txt"}), "invalid_path"),
    (json.dumps({"path": "/abs", "filename": "x.txt"}), "invalid_path"),
    (json.dumps({"path": "a//b", "filename": "x.txt"}), "invalid_path"),
    (json.dumps({"filename": "a\\b.txt"}), "invalid_path"),
    (json.dumps({"path": "out/{{input.missing}}", "filename": "x.txt"}), "template_error"),
    (json.dumps({"filename": "{{data.nope}}.txt", "params": {"data": {}}}), "template_error"),
    (json.dumps({"slot": "never-bound"}), "invalid_spec"),
])
def test_persist_rejects_bad_spec_path_template(c, api_server, spec_header, code):
    before = ok_body(c.get(f"{WS}/resources"))["meta"]["total"]
    r = c.post(f"{WS}/resources", content=b"x", headers={"X-Persist-Spec": spec_header})
    err = error_body(r, 400, code)
    assert err["code"] in ("bad_request", "invalid_spec", "invalid_path", "template_error")
    assert ok_body(c.get(f"{WS}/resources"))["meta"]["total"] == before
    assert not list((api_server.home / "tmp").glob("*.part"))


def test_persist_kv_body_must_be_json(c):
    error_body(upload(c, b"not json at all", {"type": "kv"}), 400, "invalid_spec")


def test_persist_declared_length_over_limit_is_413(c, api_server):
    body = b"\0" * (52_428_800 + 1)
    r = upload(c, body, {"filename": "big.bin"})
    error_body(r, 413, "too_large")
    assert not list((api_server.home / "tmp").glob("*.part"))


def test_persist_at_exact_limit_is_accepted_on_ephemeral_and_retained(c):
    rec = persist(c, b"\1" * 52_428_800, filename="limit.bin", tier="retained",
                  **{"workflow-id": "wf-limit"})
    assert rec["size"] == 52_428_800
    ok_body(c.delete(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}))


def test_persist_template_path_renders(c):
    rec = persist(c, b"templated\n", path="exports/{{input.year}}/{{workspace-id}}",
                  filename="r-{{input.n}}.txt", params={"input": {"year": "2026", "n": 7}},
                  flow="fl", step="st")
    assert rec["path"].endswith("/exports/2026/ws-acme/r-7.txt")
    assert rec["filename"] == "r-7.txt"


# -- idempotency ------------------------------------------------------------------------
def test_idempotency_replay_returns_first_record(c):
    key = f"idem-{uid()}"
    first = upload(c, b"once\n", {"filename": "once.txt"}, **{"Idempotency-Key": key})
    rec = ok_body(first, 201)["data"]
    total = ok_body(c.get(f"{WS}/resources"))["meta"]["total"]
    again = upload(c, b"once\n", {"filename": "once.txt"}, **{"Idempotency-Key": key})
    env = ok_body(again, 200)
    assert env["data"] == rec
    assert env["meta"].get("replayed") is True
    assert ok_body(c.get(f"{WS}/resources"))["meta"]["total"] == total


def test_idempotency_different_body_is_409(c):
    key = f"idem-{uid()}"
    ok_body(upload(c, b"one\n", {"filename": "x.txt"}, **{"Idempotency-Key": key}), 201)
    total = ok_body(c.get(f"{WS}/resources"))["meta"]["total"]
    r = upload(c, b"two\n", {"filename": "x.txt"}, **{"Idempotency-Key": key})
    error_body(r, 409, "idempotency_conflict")
    r = upload(c, b"one\n", {"filename": "y.txt"}, **{"Idempotency-Key": key})
    error_body(r, 409, "idempotency_conflict")
    assert ok_body(c.get(f"{WS}/resources"))["meta"]["total"] == total


def test_idempotency_concurrent_retries_make_one_record(c, api_server):
    from concurrent.futures import ThreadPoolExecutor
    key, wf = f"idem-{uid()}", f"wf-{uid()}"
    spec = {"filename": "race.txt", "workflow-id": wf}

    def once(_):
        with api_server.client("admin") as cl:
            return upload(cl, b"raced body\n" * 1000, spec, **{"Idempotency-Key": key})

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(once, range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201], \
        [(r.status_code, r.text[:200]) for r in responses]
    assert len({r.json()["data"]["uri"] for r in responses}) == 1
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf}))
    assert env["meta"]["total"] == 1
    assert not list((api_server.home / "tmp").glob("*.part"))


# -- search and list --------------------------------------------------------------------
def test_search_list_and_filters(c):
    wf = f"wf-{uid()}"
    word = f"zq{uid()}"
    a = persist(c, f"first {word} document\n".encode(), filename="a.txt",
                **{"workflow-id": wf}, tags=["red"])
    b = persist(c, f"second {word} document\n".encode(), filename="report-42.pdf.txt",
                **{"workflow-id": wf}, tier="ephemeral")
    env = ok_body(c.get(f"{WS}/resources/search", params={"q": word}))
    items = env["data"]["items"]
    assert {i["uri"] for i in items} == {a["uri"]}     # ephemeral: no raw content
    assert "score" in items[0] and f"<b>{word}</b>" in items[0]["snippet"]
    assert env["meta"]["total"] == 1
    # list: newest first, filters combine with AND
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf}))
    assert [i["uri"] for i in env["data"]["items"]] == [b["uri"], a["uri"]]
    assert env["meta"]["total"] == 2 and env["meta"]["count"] == 2
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf, "tier": "retained"}))
    assert [i["uri"] for i in env["data"]["items"]] == [a["uri"]]
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf, "tag": "red"}))
    assert [i["uri"] for i in env["data"]["items"]] == [a["uri"]]
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf, "exclude-tier": "retained"}))
    assert [i["uri"] for i in env["data"]["items"]] == [b["uri"]]
    # punctuation in user text just works
    env = ok_body(c.get(f"{WS}/resources/search", params={"q": "report-42.pdf.txt",
                                                          "workflow-id": wf}))
    assert b["uri"] in [i["uri"] for i in env["data"]["items"]]
    # paging with the cursor
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf, "limit": 1}))
    cursor = env["meta"]["next-cursor"]
    assert cursor and env["meta"]["total"] == 2
    env = ok_body(c.get(f"{WS}/resources", params={"workflow-id": wf, "limit": 1,
                                                   "cursor": cursor}))
    assert [i["uri"] for i in env["data"]["items"]] == [a["uri"]]


@pytest.mark.parametrize("path, params, code", [
    ("/resources/search", {"q": "x" * 2001}, "invalid_query"),
    ("/resources/search", {"q": "a", "cursor": "garbage!!"}, "invalid_cursor"),
    ("/resources/search", {"q": "a", "keyword-mode": "nope"}, "invalid_spec"),
    ("/resources", {"limit": "0"}, "invalid_spec"),
    ("/resources", {"limit": "101"}, "invalid_spec"),
    ("/resources", {"limit": "ten"}, "invalid_spec"),
    ("/resources", {"type": "folder"}, "invalid_spec"),
    ("/resources", {"tier": "forever"}, "invalid_spec"),
    ("/resources", {"accept": "not a mime"}, "invalid_spec"),
    ("/resources", {"cursor": "garbage!!"}, "invalid_cursor"),
    ("/resources", {"slot": "never-bound"}, "invalid_spec"),
])
def test_search_and_list_bad_query_is_400(c, path, params, code):
    error_body(c.get(f"{WS}{path}", params=params), 400, code)


@pytest.mark.parametrize("q", ['"unbalanced', "title:(", "((", "AND", "-", "a:b:c", "foo^",
                               "[1 TO", "*?", "\\", "ü:ß", "tags:", ")", "OR OR", "{}"])
def test_odd_queries_never_500(c, api_server, q):
    r = c.get(f"{WS}/resources/search", params={"q": q})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        error_body(r, 400, "invalid_query")
    else:
        ok_body(r)
    assert not internal_errors(api_server)


def test_cursor_of_another_query_is_400(c):
    persist(c, b"c1\n", filename="c1.txt")
    persist(c, b"c2\n", filename="c2.txt")
    env = ok_body(c.get(f"{WS}/resources", params={"limit": 1}))
    cursor = env["meta"]["next-cursor"]
    assert cursor
    error_body(c.get(f"{WS}/resources", params={"limit": 1, "tier": "ephemeral",
                                                "cursor": cursor}), 400, "invalid_cursor")


# -- by-uri -----------------------------------------------------------------------------
def test_by_uri_errors(c):
    error_body(c.get(f"{WS}/resources/by-uri"), 400)
    error_body(c.get(f"{WS}/resources/by-uri", params={"uri": MISSING}), 404, "not_found")
    error_body(c.get(f"{WS}/resources/by-uri", params={"uri": "garbage"}), 404, "not_found")
    error_body(c.delete(f"{WS}/resources/by-uri"), 400)
    error_body(c.delete(f"{WS}/resources/by-uri", params={"uri": MISSING}), 404, "not_found")


def test_delete_removes_blob_record_and_index(c, api_server):
    word = f"del{uid()}"
    rec = persist(c, f"{word} to delete\n".encode(), filename="gone.txt")
    blob = api_server.home / rec["path"]
    assert blob.exists()
    assert ok_body(c.get(f"{WS}/resources/search", params={"q": word}))["meta"]["total"] == 1
    env = ok_body(c.delete(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}))
    assert env["data"]["uri"] == rec["uri"] and env["meta"]["deleted"] is True
    assert not blob.exists()
    error_body(c.get(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}), 404)
    error_body(c.get(f"{WS}/resources/content", params={"uri": rec["uri"]}), 404)
    assert ok_body(c.get(f"{WS}/resources/search", params={"q": word}))["meta"]["total"] == 0
    error_body(c.delete(f"{WS}/resources/by-uri", params={"uri": rec["uri"]}), 404)


# -- content and url (details in test_api_content / test_api_signed) -----------------------
def test_content_and_url_success_and_errors(c, api_server):
    body = b"content route\n"
    rec = persist(c, body, filename="cr.txt")
    r = c.get(f"{WS}/resources/content", params={"uri": rec["uri"]})
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-type"].startswith("text/plain")
    error_body(c.get(f"{WS}/resources/content"), 400)
    error_body(c.get(f"{WS}/resources/content", params={"uri": MISSING}), 404)
    env = ok_body(c.get(f"{WS}/resources/url", params={"uri": rec["uri"]}))
    assert env["data"]["url"].startswith(f"{api_server.base}/signed/")
    assert env["data"]["expires-at"].endswith("Z")
    error_body(c.get(f"{WS}/resources/url"), 400)
    error_body(c.get(f"{WS}/resources/url", params={"uri": MISSING}), 404)
    error_body(c.get(f"{WS}/resources/url", params={"uri": rec["uri"], "ttl": "abc"}), 400,
               "invalid_spec")


# -- search-index -----------------------------------------------------------------------
def test_search_index_show_replace_update_clear(c):
    word, other = f"si{uid()}", f"ov{uid()}"
    rec = persist(c, f"{word} original text\n".encode(), filename="si.txt", tags=["base"])
    env = ok_body(c.get(f"{WS}/resources/search-index", params={"uri": rec["uri"]}))
    assert env["meta"]["search-index"] == {"text": None, "tags": [], "source-label": None,
                                           "include-raw-content": None}
    # replace
    env = ok_body(c.post(f"{WS}/resources/search-index", params={"uri": rec["uri"], "op": "replace"},
                         json={"text": f"{other} replacement", "tags": ["x1"],
                               "source-label": "lbl"}))
    assert env["data"]["search-index"]["text"] == f"{other} replacement"
    assert env["data"]["source-label"] == "lbl"
    assert ok_body(c.get(f"{WS}/resources/search", params={"q": other}))["meta"]["total"] == 1
    assert ok_body(c.get(f"{WS}/resources/search", params={"q": word}))["meta"]["total"] == 0
    assert ok_body(c.get(f"{WS}/resources/search",
                         params={"q": f"tags:x1 {other}"}))["meta"]["total"] == 1
    # update merges (tags added, text kept)
    env = ok_body(c.post(f"{WS}/resources/search-index", params={"uri": rec["uri"], "op": "update"},
                         json={"tags": ["x2"]}))
    si = env["data"]["search-index"]
    assert si["tags"] == ["x1", "x2"] and si["text"] == f"{other} replacement"
    # replace drops what is not given; the wrapped form {"search-index": {...}} works too
    env = ok_body(c.post(f"{WS}/resources/search-index", params={"uri": rec["uri"]},
                         json={"search-index": {"tags": ["only"]}}))
    assert env["data"]["search-index"] == {"text": None, "tags": ["only"], "source-label": None,
                                           "include-raw-content": None}
    assert ok_body(c.get(f"{WS}/resources/search", params={"q": word}))["meta"]["total"] == 1
    # clear
    env = ok_body(c.post(f"{WS}/resources/search-index", params={"uri": rec["uri"], "op": "clear"}))
    assert env["data"]["search-index"]["tags"] == []
    assert env["data"]["source-label"] == "upload"
    # stored bytes never change
    r = c.get(f"{WS}/resources/content", params={"uri": rec["uri"]})
    assert r.content == f"{word} original text\n".encode()


def test_search_index_errors(c, reader):
    rec = persist(c, b"si errors\n", filename="sie.txt")
    p = {"uri": rec["uri"]}
    error_body(c.get(f"{WS}/resources/search-index"), 400)
    error_body(c.get(f"{WS}/resources/search-index", params={"uri": MISSING}), 404)
    error_body(c.post(f"{WS}/resources/search-index", params={**p, "op": "explode"}, json={}), 400)
    error_body(c.post(f"{WS}/resources/search-index", params=p), 400)        # no body
    error_body(c.post(f"{WS}/resources/search-index", params=p, content=b"{nope"), 400)
    error_body(c.post(f"{WS}/resources/search-index", params=p, json={"colour": "x"}), 400,
               "invalid_spec")
    error_body(c.post(f"{WS}/resources/search-index", params=p, json={"text": 5}), 400)
    error_body(c.post(f"{WS}/resources/search-index", params=p, json=[1, 2]), 400)
    error_body(c.post(f"{WS}/resources/search-index", params={"uri": MISSING}, json={}), 404)
    ok_body(reader.get(f"{WS}/resources/search-index", params=p))
    error_body(reader.post(f"{WS}/resources/search-index", params=p, json={}), 403, "forbidden")


# -- workflows --------------------------------------------------------------------------
def test_workflow_list_step_and_delete(c, api_server):
    wf = f"wf-{uid()}"
    a = persist(c, b"wa\n", filename="a.txt", **{"workflow-id": wf}, step="s1")
    b = persist(c, b"wb\n", filename="b.txt", **{"workflow-id": wf}, step="s2",
                tier="ephemeral")
    keep = persist(c, b"keep\n", filename="k.txt", **{"workflow-id": f"{wf}-x"})
    env = ok_body(c.get(f"{WS}/workflows/{wf}/resources"))
    assert [i["uri"] for i in env["data"]["items"]] == [b["uri"], a["uri"]]
    env = ok_body(c.get(f"{WS}/workflows/{wf}/resources", params={"step": "s1"}))
    assert [i["uri"] for i in env["data"]["items"]] == [a["uri"]]
    error_body(c.delete(f"{WS}/workflows/{wf}/resources", params={"tier": "forever"}), 400)
    env = ok_body(c.delete(f"{WS}/workflows/{wf}/resources", params={"tier": "ephemeral"}))
    assert env["data"]["deleted"] == [b["uri"]] and env["meta"]["count"] == 1
    env = ok_body(c.delete(f"{WS}/workflows/{wf}/resources"))
    assert env["data"]["deleted"] == [a["uri"]]
    assert not (api_server.home / a["path"]).exists()
    assert ok_body(c.get(f"{WS}/workflows/{wf}/resources"))["data"]["items"] == []
    env = ok_body(c.delete(f"{WS}/workflows/{wf}/resources"))
    assert env["data"]["deleted"] == [] and env["meta"]["count"] == 0
    ok_body(c.get(f"{WS}/resources/by-uri", params={"uri": keep["uri"]}))
    error_body(c.get(f"{WS}/workflows/{wf}/resources", params={"limit": "0"}), 400)


# -- usage ------------------------------------------------------------------------------
def test_usage(c):
    before = ok_body(c.get(f"{WS}/usage"))["data"]
    persist(c, b"12345", filename="u.txt")
    data = ok_body(c.get(f"{WS}/usage"))["data"]
    assert data["workspace"] == "ws-acme"
    assert data["count"] == before["count"] + 1
    assert data["bytes"] == before["bytes"] + 5
    tiers = {t["tier"]: t for t in data["by-tier"]}
    assert tiers["retained"]["count"] >= 1
    assert "extraction-failures" in data and "by-storage-root" in data


# -- slots ------------------------------------------------------------------------------
def test_slots_put_list_and_persist(c, reader, api_server):
    name = f"archive-{uid()}"
    env = ok_body(c.put(f"{WS}/slots/{name}", json={"connection": "platform",
                                                   "root": "reports/acme"}))
    assert env["data"]["slot"] == name and env["data"]["root"] == "reports/acme"
    assert env["data"]["storage-backend"] == "platform"
    slots = ok_body(c.get(f"{WS}/slots"))
    assert name in [s["slot"] for s in slots["data"]["items"]]
    assert slots["meta"]["total"] == len(slots["data"]["items"])
    ok_body(reader.get(f"{WS}/slots"))
    rec = persist(c, b"v1\n", slot=name, path="exports/2026", filename="a.txt")
    assert rec["path"] == "workspaces/ws-acme/storage/reports/acme/exports/2026/a.txt"
    assert rec["storage-root"] == "reports/acme" and rec["path-under-root"] == "exports/2026/a.txt"
    assert rec["slot"] == name
    again = persist(c, b"v2!\n", status=200, slot=name, path="exports/2026", filename="a.txt")
    assert again["uri"] == rec["uri"] and again["version"] == 2
    assert (api_server.home / rec["path"]).read_bytes() == b"v2!\n"
    env = ok_body(c.get(f"{WS}/resources", params={"slot": name, "path-prefix": "exports/2026"}))
    assert [i["uri"] for i in env["data"]["items"]] == [rec["uri"]]
    env = ok_body(c.get(f"{WS}/resources", params={"slot": name, "path-prefix": "exports/20"}))
    assert env["data"]["items"] == []
    # rebinding moves the root
    env = ok_body(c.put(f"{WS}/slots/{name}", json={"root": "reports/other"}))
    assert env["data"]["root"] == "reports/other" and env["data"]["connection"] == "platform"


@pytest.mark.parametrize("body, code", [
    ({"root": "../up"}, "invalid_path"),
    ({"root": "/abs"}, "invalid_path"),
    ({"root": "a//b"}, "invalid_path"),
    ({"root": 5}, "invalid_spec"),
    ({"connection": "platform"}, "invalid_spec"),
    ({"root": "ok", "connection": "nowhere"}, "invalid_spec"),
    ([1], "invalid_spec"),
    (None, "invalid_spec"),
])
def test_slot_put_bad_body_is_400(c, body, code):
    r = c.put(f"{WS}/slots/s-{uid()}", content=b"" if body is None else json.dumps(body))
    error_body(r, 400, code)


def test_slot_put_bad_name_and_bad_json(c):
    error_body(c.put(f"{WS}/slots/bad name!", json={"root": "r"}), 400, "invalid_path")
    error_body(c.put(f"{WS}/slots/s1", content=b"{nope"), 400)


def test_slot_put_needs_admin(api_server):
    for key in ("read", "write"):
        with api_server.client(key) as cl:
            error_body(cl.put(f"{WS}/slots/s-{uid()}", json={"root": "r"}), 403, "forbidden")


def test_no_internal_errors_logged(api_server):
    assert not internal_errors(api_server), internal_errors(api_server)

"""Issue 14, items 6, 8, 10, 11, 12 and 13 against a real server."""
from __future__ import annotations

import json
import re
import sqlite3

import httpx
import pytest

from server import FIXTURES, cli, base_env, error_body, ok_body, upload

WS = "/v1/ws-acme"


# -- 10: field:* and deep JSON ----------------------------------------------------------------
@pytest.mark.parametrize("q", ["tag:*", "filename:*", "content:*", "storage_root:*",
                               "storage-root:*", "(tag:*)", "-tag:*", "display_name:*"])
def test_field_star_is_400(api_server, q):
    with api_server.client("read") as r:
        err = error_body(r.get(f"{WS}/resources/search", params={"q": q}), 400)
        assert ":*" in err["message"]


def test_deeply_nested_json_is_400_everywhere(api_server):
    deep = "[" * 5000 + "]" * 5000
    with api_server.client("admin") as c:
        r = c.put(f"{WS}/kv/deep", content='{"value": ' + deep + "}",
                  headers={"content-type": "application/json"})
        error_body(r, 400)
        error_body(upload(c, deep.encode(), {"type": "kv", "filename": "d.json"}), 400)
        r = c.post(f"{WS}/resources/search-index", params={"uri": "res://v1/ws/ws-acme/file/x"},
                   content=deep, headers={"content-type": "application/json"})
        assert r.status_code in (400, 404)
        assert c.get("/healthz").status_code == 200


def test_deep_json_blob_page_renders(api_server):
    deep = ("[" * 5000 + "]" * 5000).encode()
    with api_server.client("admin") as c:
        rec = ok_body(upload(c, deep, {"filename": "deep.json"}), 201)["data"]
    web = _web_client(api_server, "admin")
    r = web.get(f"/ui/ws-acme/resources/{rec['uri'].rsplit('/', 1)[-1]}")
    assert r.status_code == 200, r.text[:300]


def test_kv_persist_body_is_bounded(api_server):
    with api_server.client("write") as c:
        body = b'"' + b"a" * (17 * 1024 * 1024) + b'"'
        err = error_body(upload(c, body, {"type": "kv", "filename": "big.json"}), 413)
        assert "limit" in err["message"]


# -- 12: healthz and write-only keys ------------------------------------------------------------
def test_healthz_without_key_shows_no_counts(api_server):
    body = httpx.get(f"{api_server.base}/healthz").json()
    text = json.dumps(body)
    assert "documents" not in text and "backlog" not in text


def test_write_only_key_cannot_read_through_search_index(api_server):
    from server import create_key
    key = create_key(api_server.home, "ws-acme", "resources.write")
    with api_server.client("admin") as c:
        rec = ok_body(upload(c, b"secret words here", {"filename": "wo.txt"}), 201)["data"]
    with api_server.client(key) as w:
        r = w.post(f"{WS}/resources/search-index", params={"uri": rec["uri"], "op": "update"},
                   json={"tags": ["x"]})
        error_body(r, 403, "forbidden")


# -- 13: look-alike names --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a\u202etxt.exe", "in\u200bvoice.pdf", "\uff0e\uff0e",
                                  "x\uff0fy.txt", "\ufeffbom.txt"])
def test_lookalike_names_are_400(api_server, name):
    with api_server.client("write") as c:
        error_body(upload(c, b"x", {"filename": name}), 400, "invalid_path")


def test_nfc_and_nfd_spellings_are_one_resource(api_server):
    cli("slots", "bind", "nfc", "--root", "nfc-root",
        env=base_env(api_server.home) | {"RESOURCES_WORKSPACE": "ws-acme"})
    with api_server.client("write") as c:
        first = ok_body(upload(c, b"one", {"slot": "nfc", "filename": "caf\u00e9.txt"}),
                        201)["data"]
        second = ok_body(upload(c, b"two", {"slot": "nfc", "filename": "cafe\u0301.txt"}),
                         200)["data"]
        assert first["uri"] == second["uri"] and second["version"] == 2


# -- 11: keys list / revoke, sessions end at logout -------------------------------------------
def _web_client(server, key_name: str) -> httpx.Client:
    web = httpx.Client(base_url=server.base, timeout=30, follow_redirects=False)
    page = web.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = web.post("/ui/login", data={"csrf": csrf, "key": server.keys.get(key_name, key_name)})
    assert r.status_code == 303, r.text[:300]
    return web


def test_keys_list_and_revoke_over_cli_and_http(api_server):
    from server import create_key
    env = base_env(api_server.home)
    key = create_key(api_server.home, "ws-acme", "resources.read")
    key_id = key.split("_")[1]
    listed = json.loads(cli("keys", "list", "--workspace", "ws-acme", "--format", "json",
                            env=env).stdout)["data"]["items"]
    assert key_id in {k["id"] for k in listed}
    assert key not in json.dumps(listed) and "hash" not in json.dumps(listed)
    with api_server.client("admin") as admin, api_server.client(key) as victim:
        assert victim.get(f"{WS}/resources").status_code == 200
        items = ok_body(admin.get(f"{WS}/keys"))["data"]["items"]
        assert key_id in {k["id"] for k in items}
        # another workspace's admin cannot see or revoke it
        with api_server.client("other") as other:
            error_body(other.delete(f"/v1/ws-other/keys/{key_id}"), 404)
        web = _web_client(api_server, key)
        assert web.get("/ui/ws-acme/search").status_code == 200
        ok_body(admin.delete(f"{WS}/keys/{key_id}"))
        error_body(victim.get(f"{WS}/resources"), 401)
        assert web.get("/ui/ws-acme/search").status_code == 303     # session ended
    # CLI revoke of a missing key: exit 1 with a message
    proc = cli("keys", "revoke", "nosuchkey", env=env, check=False)
    assert proc.returncode == 1 and b"no key" in proc.stderr + proc.stdout


def test_logout_ends_the_session_even_for_a_copied_cookie(api_server):
    web = _web_client(api_server, "read")
    cookies = dict(web.cookies)
    page = web.get("/ui/ws-acme/search")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert web.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    copied = httpx.Client(base_url=api_server.base, cookies=cookies, follow_redirects=False)
    assert copied.get("/ui/ws-acme/search").status_code == 303


# -- 6: previews come from the stored extract ---------------------------------------------------
def test_pdf_preview_is_the_stored_extract_not_a_fresh_extraction(api_server):
    pdf = (FIXTURES / "multipage.pdf")
    if not pdf.exists():
        pdf = next(FIXTURES.glob("*.pdf"))
    with api_server.client("admin") as c:
        rec = ok_body(upload(c, pdf.read_bytes(), {"filename": "p.pdf"}), 201)["data"]
    rid = rec["uri"].rsplit("/", 1)[-1]
    conn = sqlite3.connect(api_server.home / "catalog.db")
    with conn:
        conn.execute("UPDATE extracts SET text = ? WHERE id = ?", ("storedextractmarker", rid))
    conn.close()
    web = _web_client(api_server, "admin")
    page = web.get(f"/ui/ws-acme/resources/{rid}")
    assert page.status_code == 200 and "storedextractmarker" in page.text

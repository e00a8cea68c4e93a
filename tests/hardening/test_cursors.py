"""Issue 14, item 2: a read key must never kill the server through a cursor.

Cursors are HMAC-authenticated (bound to workspace + query fingerprint) and bounded; a
forged, tampered or out-of-range cursor is a 400, and the server keeps answering."""
from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from server import error_body, ok_body, upload

WS = "/v1/ws-acme"


def _forge(kind: str, value: int, fp: str = "0" * 16) -> str:
    raw = json.dumps({"k": kind, "v": value, "f": fp}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _seed(c, word: str, n: int = 3) -> None:
    for i in range(n):
        ok_body(upload(c, f"{word} number {i}\n".encode(), {"filename": f"{word}{i}.txt"}), 201)


def test_forged_cursors_are_400_and_the_server_lives(api_server):
    with api_server.client("admin") as c:
        _seed(c, "cursorbomb")
    with api_server.client("read") as r:
        first = ok_body(r.get(f"{WS}/resources/search", params={"q": "cursorbomb", "limit": 1}))
        real = first["meta"]["next-cursor"]
        assert real
        for bad in (_forge("off", 10**12), _forge("seq", 10**30), _forge("off", -1),
                    real[:-2] + ("AA" if not real.endswith("AA") else "BB"),
                    "A" * 5000, "%%%", real + "x"):
            resp = r.get(f"{WS}/resources/search", params={"q": "cursorbomb", "cursor": bad})
            error_body(resp, 400, "invalid_cursor")
            resp = r.get(f"{WS}/resources", params={"cursor": bad})
            error_body(resp, 400, "invalid_cursor")
        # The genuine cursor still pages, and only for its own query.
        nxt = ok_body(r.get(f"{WS}/resources/search",
                            params={"q": "cursorbomb", "limit": 1, "cursor": real}))
        assert nxt["data"]["items"][0]["uri"] != first["data"]["items"][0]["uri"]
        error_body(r.get(f"{WS}/resources/search", params={"q": "other", "cursor": real}),
                   400, "invalid_cursor")
        assert r.get("/healthz").status_code == 200


def test_cursor_of_another_workspace_is_refused(api_server):
    with api_server.client("admin") as c:
        _seed(c, "crossws", 2)
        real = ok_body(c.get(f"{WS}/resources", params={"limit": 1}))["meta"]["next-cursor"]
    with api_server.client("other") as o:
        error_body(o.get("/v1/ws-other/resources", params={"cursor": real}), 400,
                   "invalid_cursor")


def test_deep_offsets_are_bounded(api_server):
    h = {"X-Breyta-Workspace": "ws-acme"}
    with api_server.client("read") as r:
        resp = r.get("/api/resources/search", params={"query": "x", "offset": 10**12}, headers=h)
        assert resp.status_code == 400, resp.text
        assert "offset" in resp.json()["error"]["message"]
        # At the edge of the window: an answer or a precise 400, never a 500.
        for offset in (10_000, 9_999):
            resp = r.get("/api/resources/search", params={"query": "x", "offset": offset,
                                                         "limit": 50}, headers=h)
            assert resp.status_code in (200, 400), resp.text
        assert r.get("/healthz").status_code == 200


def test_kv_cursor_out_of_range_is_400(api_server):
    bad = base64.urlsafe_b64encode(str(10**30).encode()).decode().rstrip("=")
    with api_server.client("read") as r:
        resp = r.get(f"{WS}/kv", params={"cursor": bad})
        assert resp.status_code == 400, resp.text


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(cursor=st.one_of(st.text(max_size=300), st.binary(max_size=200).map(
    lambda b: base64.urlsafe_b64encode(b).decode())))
def test_fuzz_cursors_never_500(api_server, cursor):
    """Fuzz target: any cursor text is a page or a 400, never a 500 or a dead server."""
    with api_server.client("read") as r:
        for path, params in ((f"{WS}/resources", {}), (f"{WS}/resources/search", {"q": "a"})):
            resp = r.get(path, params={**params, "cursor": cursor})
            assert resp.status_code in (200, 400), (cursor, resp.status_code, resp.text)

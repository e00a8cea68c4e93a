"""Structured logs of a real server: every line is JSON, every request has exactly one
line carrying the id echoed in X-Request-Id, and no key, secret, signed token or session
cookie appears in any line at any level (debug included)."""
from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid

import pytest

from search_api import logs
from server import error_body, ok_body, start_server, stop_server, upload


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def debug_srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("logs-debug"),
                          extra_env={"RESOURCES_LOG_LEVEL": "debug"})
    yield server
    stop_server(server)


def json_lines(server) -> list[dict]:
    """Every line of the server's output, each of which must be one JSON object."""
    out = []
    for line in server.stderr_text().splitlines():
        if line.strip():
            out.append(json.loads(line))          # raises on any non-JSON line
    return out


def wait_for(predicate, server, what: str) -> list[dict]:
    """The request line is written after the last body byte went out, so the client may
    see the response first: poll the log until the line is there."""
    deadline = time.monotonic() + 20
    while True:
        lines = json_lines(server)
        if predicate(lines):
            return lines
        assert time.monotonic() < deadline, f"never logged: {what}"
        time.sleep(0.05)


def test_a_burst_logs_one_json_line_per_request_with_its_id(srv):
    sent: list[str] = []
    with srv.client("write") as c:
        uri = ok_body(upload(c, b"log me\n", {"filename": "l.txt"}), 201)["data"]["uri"]
        for i in range(12):
            headers = {"X-Request-Id": f"burst-{i}-{uuid.uuid4().hex[:8]}"} if i % 2 else {}
            r = c.get("/v1/ws-acme/resources/by-uri", params={"uri": uri}, headers=headers)
            assert r.status_code == 200
            if i % 2:
                assert r.headers["x-request-id"] == headers["X-Request-Id"]   # honoured
            sent.append(r.headers["x-request-id"])
        r = c.get("/v1/ws-acme/resources/by-uri", params={"uri": uri},
                  headers={"X-Request-Id": "has spaces\tand a tab"})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])   # replaced
        sent.append(r.headers["x-request-id"])
        error_body(c.get("/v1/ws-acme/resources/by-uri", params={"uri": "res://nope"}), 404)
        sent.append(c.get("/v1/ws-acme/nowhere").headers["x-request-id"])
    assert len(set(sent)) == len(sent)

    def all_there(lines: list[dict]) -> bool:
        ids = [ln.get("request_id") for ln in lines]
        return all(ids.count(rid) >= 1 for rid in sent)
    lines = wait_for(all_there, srv, "the burst")
    for rid in sent:
        mine = [ln for ln in lines if ln.get("request_id") == rid]
        assert len(mine) == 1, (rid, mine)
    line = next(ln for ln in lines if ln.get("request_id") == sent[1])
    assert line["event"] == "request" and line["level"] == "info"
    assert line["method"] == "GET" and line["route"] == "/v1/{ws}/resources/by-uri"
    assert line["status"] == 200 and line["workspace"] == "ws-acme"
    assert line["key_id"] == srv.keys["write"].split("_")[1]
    assert line["bytes_out"] > 0 and line["duration_ms"] >= 0
    unmatched = next(ln for ln in lines if ln.get("request_id") == sent[-1])
    assert unmatched["route"] == "<unmatched>" and unmatched["status"] == 404
    for ln in lines:
        assert {"ts", "level", "logger", "msg"} <= set(ln)


def test_no_key_secret_token_or_cookie_is_ever_logged(debug_srv):
    srv = debug_srv
    secrets: set[str] = set()
    for key in srv.keys.values():
        secrets |= {key, key.split("_", 2)[2]}
    forged = "rk_deadbeef_" + "S3cr3t" * 6
    secrets |= {forged, "S3cr3t" * 6}
    with srv.client("admin") as c:
        uri = ok_body(upload(c, b"secret-free\n", {"filename": "s.txt"}), 201)["data"]["uri"]
        url = ok_body(c.get("/v1/ws-acme/resources/url", params={"uri": uri}))["data"]["url"]
        token = url.rsplit("/", 1)[1]
        secrets.add(token)
        assert c.get(url).status_code == 200
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        secrets.add(tampered)
        assert c.get(f"/signed/{tampered}").status_code == 403
        assert c.get(f"/signed/{token}?note=x").status_code == 200
        ok_body(c.put("/v1/ws-acme/kv/k1", json={"value": {"ref": uri}}), 201)
        # the Breyta face with the key and a workspace header
        assert c.get("/api/resources", headers={"X-Breyta-Workspace": "ws-acme"}).status_code == 200
    with srv.client(forged) as bad:
        error_body(bad.get("/v1/ws-acme/resources"), 401)
        assert bad.get("/metrics").status_code == 401
    # The web view: the key goes in a form, a signed session cookie comes back.
    with srv.client(None, follow_redirects=False) as web:
        page = web.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        secrets.add(csrf)
        r = web.post("/ui/login", data={"key": srv.keys["read"], "csrf": csrf})
        assert r.status_code == 303, r.text
        secrets |= {v for v in web.cookies.values()}
        assert web.get("/ui/ws-acme/search", params={"q": "secret"}).status_code == 200
        r = web.post("/ui/login", data={"key": forged, "csrf": csrf})
        assert r.status_code in (401, 403)
    marker = uuid.uuid4().hex
    with srv.client("admin") as c:
        c.get("/healthz", headers={"X-Request-Id": marker})
    lines = wait_for(lambda ls: any(ln.get("request_id") == marker for ln in ls), srv,
                     "the last request")
    text = srv.stderr_text()
    assert any(ln["level"] == "debug" for ln in lines)      # debug was on
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, f"secrets in the log: {[s[:12] + '...' for s in leaked]}"
    assert "Bearer" not in text and "resources_session=" not in text


def test_text_format_for_a_terminal_and_the_redactor():
    stream = io.StringIO()
    logs.configure("info", "text", stream)
    try:
        logs.log(logging.getLogger("resources.http"), logging.INFO, "request",
                 event="request", route="/v1/{ws}/kv/{key:kvkey}", status=200,
                 note="Authorization: Bearer rk_abc_topsecret")
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_resources", False)]:
            root.removeHandler(handler)
    line = stream.getvalue()
    assert not line.startswith("{") and " INFO " in line
    assert "route=/v1/{ws}/kv/{key:kvkey}" in line and "status=200" in line
    assert "topsecret" not in line and "[redacted]" in line

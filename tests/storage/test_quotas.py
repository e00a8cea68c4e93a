"""Quotas per workspace and tier on a real server: only an operator key sets them; the
persist that would cross one is refused (507 quota_exceeded, naming limit and usage)
with nothing kept; usage beside the limits matches a recount by `doctor`; a limit set
with the CLI applies to the running server at its next persist."""
from __future__ import annotations

import json

import pytest

from conftest import files_under
from server import (KEY_SPECS, base_env, cli, error_body, ok_body, start_server, stop_server,
                    upload)

OPS_KEYS = {**KEY_SPECS, "ops": ("ops", "service.admin")}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("quotas"), keys=OPS_KEYS)
    yield server
    stop_server(server)


def set_quota(server, ws: str, key: str = "ops", **body):
    with server.client(key) as c:
        return c.put(f"/admin/quotas/{ws}", json=body)


def test_only_an_operator_key_sets_quotas(srv):
    error_body(set_quota(srv, "ws-acme", key=None, tier="retained", **{"max-bytes": 1}), 401)
    error_body(set_quota(srv, "ws-acme", key="admin", tier="retained", **{"max-bytes": 1}),
               403, "forbidden")
    error_body(set_quota(srv, "ws-acme", tier="gold", **{"max-bytes": 1}), 400)
    error_body(set_quota(srv, "ws-acme", tier="retained", **{"max-bytes": -1}), 400)
    with srv.client("ops") as c:
        assert ok_body(c.get("/admin/quotas"))["data"] == {}


def test_the_persist_that_crosses_the_quota_is_refused_and_nothing_is_kept(srv):
    data = ok_body(set_quota(srv, "ws-acme", tier="retained",
                             **{"max-bytes": 100, "max-resources": 3}))["data"]
    assert data["retained"]["max-bytes"] == 100 and data["retained"]["bytes"] == 0
    with srv.client("write") as c:
        ok_body(upload(c, b"a" * 60, {"filename": "q1.txt"}), 201)
        blobs_before = files_under(srv.home / "workspaces")
        listed = ok_body(c.get("/v1/ws-acme/resources"))["meta"]
        err = error_body(upload(c, b"b" * 50, {"filename": "q2.txt"}), 507, "quota_exceeded")
        assert "100 bytes" in err["message"] and "holds 60" in err["message"]
        assert err["details"] == {"limit": "max-bytes", "tier": "retained", "max": 100,
                                  "usage": 60, "adding": 50}
        assert files_under(srv.home / "workspaces") == blobs_before
        assert not files_under(srv.home / "tmp")
        assert ok_body(c.get("/v1/ws-acme/resources"))["meta"] == listed
        ok_body(upload(c, b"c" * 40, {"filename": "q3.txt"}), 201)        # exactly 100
        error_body(upload(c, b"d", {"filename": "q4.txt"}), 507, "quota_exceeded")
        ok_body(upload(c, b"", {"filename": "q5.txt"}), 201)              # 3rd resource, 0 B
        err = error_body(upload(c, b"", {"filename": "q6.txt"}), 507, "quota_exceeded")
        assert err["details"]["limit"] == "max-resources" and "3 resources" in err["message"]
        # Another tier and another workspace are not limited.
        ok_body(upload(c, b"e" * 500, {"filename": "q7.txt", "tier": "ephemeral"}), 201)
    with srv.client("other") as c:
        ok_body(upload(c, b"f" * 500, {"filename": "q8.txt"}, ws="ws-other"), 201)
        # the tenant sees its limits and usage, not another's
        quotas = ok_body(c.get("/v1/ws-other/usage"))["data"]["quotas"]
        assert quotas["retained"]["max-bytes"] is None
    # The Breyta face's three-step upload obeys the same quota at complete.
    with srv.client("write", headers={"X-Breyta-Workspace": "ws-acme"}) as c:
        r = c.post("/api/files/uploads/init", json={"filename": "b.txt", "folder": "docs"})
        assert r.status_code == 200, r.text
        init = r.json()
        assert c.put(init["upload-url"], content=b"z" * 10).status_code == 200
        r = c.post("/api/files/uploads/complete", json={
            "uri": init["uri"], "upload-session-id": init["upload-session-id"]})
        assert r.status_code == 507 and r.json()["error"]["code"] == "quota_exceeded", r.text
        assert c.get("/api/resources/by-uri", params={"uri": init["uri"]}).status_code == 404


def test_usage_beside_limits_matches_a_doctor_recount(srv):
    with srv.client("write") as c:
        quotas = ok_body(c.get("/v1/ws-acme/usage"))["data"]["quotas"]
    proc = cli("doctor", "--quick", "--format", "json", env=base_env(srv.home), check=False)
    report = json.loads(proc.stdout)["data"]
    for tier in ("retained", "ephemeral"):
        groups = [g for g in report["usage"]["groups"]
                  if g["workspace"] == "ws-acme" and g["tier"] == tier]
        assert quotas[tier]["bytes"] == sum(g["bytes"] for g in groups)
        assert quotas[tier]["resources"] == sum(g["count"] for g in groups)
    assert quotas["retained"] == {"max-bytes": 100, "max-resources": 3, "bytes": 100,
                                  "resources": 3}


def test_a_limit_set_with_the_cli_applies_to_the_running_server(srv):
    out = cli("quota", "set", "ws-other", "--tier", "ephemeral", "--max-resources", "0",
              "--format", "json", env=base_env(srv.home))
    assert json.loads(out.stdout)["data"]["ephemeral"]["max-resources"] == 0
    with srv.client("other") as c:
        error_body(upload(c, b"x", {"filename": "e.txt", "tier": "ephemeral"}, ws="ws-other"),
                   507, "quota_exceeded")
    with srv.client("ops") as c:
        assert ok_body(c.get("/admin/quotas"))["data"]["ws-other"] == {
            "ephemeral": {"max-bytes": None, "max-resources": 0}}
    cli("quota", "set", "ws-other", "--tier", "ephemeral", env=base_env(srv.home))  # removes
    with srv.client("other") as c:
        ok_body(upload(c, b"x", {"filename": "e.txt", "tier": "ephemeral"}, ws="ws-other"), 201)


def test_the_web_view_shows_usage_beside_the_limits(srv):
    import re
    with srv.client(None, follow_redirects=False) as web:
        csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/ui/login").text).group(1)
        assert web.post("/ui/login", data={"key": srv.keys["read"], "csrf": csrf}
                        ).status_code == 303
        page = web.get("/ui/ws-acme/search")
    assert page.status_code == 200
    item = re.search(r'<li data-quota="retained">(.*?)</li>', page.text, re.S).group(1)
    assert "100 of 100 bytes" in item and "3 of 3 resources" in item
    assert 'data-quota="ephemeral"' not in page.text          # no limit there: not shown

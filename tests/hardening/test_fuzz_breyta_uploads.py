"""Fuzz target for the Breyta upload routes (init, direct PUT, complete): any body or
query is an answer or a precise 4xx, never a 500, and the home stays consistent."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

H = {"X-Breyta-Workspace": "ws-acme", "X-Breyta-Client": "cli"}
names = st.one_of(st.text(max_size=40), st.sampled_from(
    ["x", "a/b", "../x", "x\u202e", "\uff0e\uff0e", "a" * 300, "", ".", "con", "x\x00y"]))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(
                               st.text(max_size=8), c, max_size=3), max_leaves=8)
bodies = st.one_of(
    st.fixed_dictionaries({"filename": names}, optional={
        "folder": names, "content-type": st.text(max_size=30), "replace-existing": json_values}),
    json_values)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, raw=st.binary(max_size=64))
def test_fuzz_upload_routes_never_500(api_server, body, raw):
    with api_server.client("write", headers=H) as c:
        r = c.post("/api/files/uploads/init", content=json.dumps(body),
                   headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (body, r.status_code, r.text)
        r2 = c.post("/api/files/uploads/init", content=raw,
                    headers={"Content-Type": "application/json"})
        assert r2.status_code < 500, (raw, r2.status_code, r2.text)
        uri = r.json().get("uri") if r.status_code == 200 else None
        target = uri if isinstance(uri, str) else (body.get("filename") if isinstance(body, dict)
                                                   and isinstance(body.get("filename"), str)
                                                   else "res://v1/ws/ws-acme/file/x")
        put = c.put("/api/files/uploads/direct", params={"uri": target}, content=raw)
        assert put.status_code < 500, (target, put.status_code, put.text)
        done = c.post("/api/files/uploads/complete",
                      content=json.dumps({"uri": target, "upload-session-id":
                                          (r.json().get("upload-session-id")
                                           if r.status_code == 200 else str(body)[:40])}),
                      headers={"Content-Type": "application/json"})
        assert done.status_code < 500, (done.status_code, done.text)

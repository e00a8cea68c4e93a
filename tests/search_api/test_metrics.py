"""/metrics of a real server: who may read it, and counters that add up exactly after
known traffic (persists, bytes, statuses by route, extraction, kv, gc), the background
gauges and the process collector; the key-less loopback listener (--metrics-port)."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server import KEY_SPECS, error_body, free_port, ok_body, start_server, stop_server, upload

OPS_KEYS = {**KEY_SPECS, "ops": ("ops", "service.admin")}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    port = free_port()
    server = start_server(tmp_path_factory.mktemp("metrics"), keys=OPS_KEYS, extra_env={
        "RESOURCES_METRICS_REFRESH_SECONDS": "0.1", "RESOURCES_METRICS_PORT": str(port)})
    server.metrics_port = port
    yield server
    stop_server(server)


def scrape(server, key: str = "ops") -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    with server.client(key) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return parse(r.text)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_needs_a_service_admin_key(srv):
    with srv.client(None) as anon:
        error_body(anon.get("/metrics"), 401, "unauthorized")
    with srv.client("admin") as ws_admin:       # workspace.admin is not the operator
        error_body(ws_admin.get("/metrics"), 403, "forbidden")
    with srv.client("rk_nope_nope") as bad:
        error_body(bad.get("/metrics"), 401, "unauthorized")


def test_counters_add_up_after_known_traffic(srv):
    before = scrape(srv)
    bodies = [b"alpha one\n", b"beta two two\n", b"gamma three three three\n"]
    with srv.client("write") as c:
        uris = [ok_body(upload(c, body, {"filename": f"m{i}.txt"}), 201)["data"]["uri"]
                for i, body in enumerate(bodies)]
        ok_body(upload(c, b"\x00\x01\x02\xff" * 250, {"filename": "e.bin",
                                                      "tier": "ephemeral"}), 201)
        for _ in range(2):
            error_body(c.get("/v1/ws-acme/resources/by-uri",
                             params={"uri": uris[0].replace("ws-acme", "ws-other")}), 404)
        error_body(c.get("/v1/ws-acme/resources/by-uri"), 400)
        ok_body(c.put("/v1/ws-acme/kv/metric-key", json={"value": {"ref": uris[0]}}), 201)
        error_body(c.get("/v1/ws-acme/kv/absent-key"), 404)
        ok_body(c.get("/v1/ws-acme/kv/metric-key"))
    after = scrape(srv)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    retained = dict(tier="retained", connection="platform")
    assert delta("resources_persists_total", kind="created", **retained) == 3
    assert delta("resources_persist_bytes_total", **retained) == sum(map(len, bodies))
    assert delta("resources_persists_total", kind="created", tier="ephemeral",
                 connection="platform") == 1
    assert delta("resources_persist_bytes_total", tier="ephemeral", connection="platform") == 1000
    route = "/v1/{ws}/resources/by-uri"
    assert delta("resources_http_requests_total", method="GET", route=route, status="404") == 2
    assert delta("resources_http_requests_total", method="GET", route=route, status="400") == 1
    assert delta("resources_http_requests_total", method="POST", route="/v1/{ws}/resources",
                 status="201") == 4
    assert delta("resources_http_request_duration_seconds_count", method="POST",
                 route="/v1/{ws}/resources", status="201") == 4
    assert delta("resources_http_request_bytes_total", route="/v1/{ws}/resources") == \
        sum(map(len, bodies)) + 1000
    assert delta("resources_extractions_total", extractor="text", outcome="ok") == 3
    assert delta("resources_extraction_duration_seconds_count", extractor="text") == 3
    assert delta("resources_extractions_total", extractor="none", outcome="ok") == 1
    assert delta("resources_kv_operations_total", op="set", outcome="ok") == 1
    assert delta("resources_kv_operations_total", op="get", outcome="ok") == 1
    assert delta("resources_kv_operations_total", op="get", outcome="not_found") == 1
    assert delta("resources_index_commits_total") >= 4       # one per persist at least
    assert delta("resources_index_commit_documents_total") >= 4


def test_gc_runs_and_removals_are_counted(srv):
    with srv.client("write") as c:
        ok_body(upload(c, b"short lived", {"filename": "gc.txt", "ttl-seconds": 60}), 201)
        ok_body(c.put("/v1/ws-acme/kv/gc-key", json={"value": 1, "ttl": 60}), 201)
    before = scrape(srv)
    srv.advance(3600)            # past the ttl and past the gc interval (300 s)
    deadline = time.monotonic() + 30
    while True:
        after = scrape(srv)
        if value(after, "resources_gc_runs_total") > value(before, "resources_gc_runs_total"):
            break
        assert time.monotonic() < deadline, "the background gc never ran"
        time.sleep(0.1)
    assert value(after, "resources_gc_removed_total", kind="resource") - \
        value(before, "resources_gc_removed_total", kind="resource") >= 1
    assert value(after, "resources_gc_removed_total", kind="kv") - \
        value(before, "resources_gc_removed_total", kind="kv") >= 1
    assert value(after, "resources_gc_removed_bytes_total") - \
        value(before, "resources_gc_removed_bytes_total") >= len(b"short lived")


def test_storage_gauges_match_usage_and_process_metrics_exist(srv):
    with srv.client("other") as c:
        ok_body(upload(c, b"other tenant", {"filename": "o.txt"}, ws="ws-other"), 201)
        usage = ok_body(c.get("/v1/ws-other/usage"))["data"]
    want = {g["tier"]: g["bytes"] for g in usage["by-tier"]}
    # The gauges come from the background refresh (0.1 s here): wait for one that saw it.
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(srv)
        got = {tier: value(samples, "resources_storage_bytes", workspace="ws-other", tier=tier)
               for tier in want}
        if got == want:
            break
        assert time.monotonic() < deadline, (got, want)
        time.sleep(0.1)
    assert value(samples, "resources_storage_resources", workspace="ws-other",
                 tier="retained") == usage["by-tier"][0]["count"]
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert ("resources_index_documents", ()) in samples
    assert ("resources_index_segments", ()) in samples
    assert value(samples, "resources_disk_free_bytes") > 0
    assert ("resources_index_lag_changes", ()) in samples


def test_loopback_metrics_port_needs_no_key(srv):
    r = httpx.get(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10)
    assert r.status_code == 200
    samples = parse(r.text)
    assert any(name == "resources_http_requests_total" for name, _ in samples)


def test_healthz_shows_no_counts_without_the_operator_key(srv):
    for key in (None, "admin", "rk_nope_nope"):
        with srv.client(key) as c:
            assert ok_body(c.get("/healthz"))["data"] == {"ok": True}
    with srv.client("ops") as c:
        data = ok_body(c.get("/healthz"))["data"]
    assert data["ok"] is True and data["index"]["documents"] >= 1
    assert json.dumps(data)      # details are plain JSON

"""/metrics of `serve --workers 2` (real uvicorn, real worker processes): whichever worker
answers a scrape, the counters are the sum over both and add up exactly after known
traffic; per-worker process series; a killed worker's counts stay and its live series go.
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from server import error_body, free_port, ok_body, start_server, stop_server, upload
from test_metrics import parse, value
from test_write_path import OPS_KEYS, eventually

from search_api import multiproc

SIZES = [100 * (i + 1) + i for i in range(10)]      # 10 persists of known sizes
BAD_REQUESTS = 7                                    # 4xx on one route template
ROUTE = "/v1/{ws}/resources/by-uri"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    port = free_port()
    server = start_server(tmp_path_factory.mktemp("metrics-workers"), keys=OPS_KEYS,
                          serve_args=("--workers", "2"), timeout=60, extra_env={
                              "RESOURCES_METRICS_REFRESH_SECONDS": "0.2",
                              "RESOURCES_METRICS_PORT": str(port)})
    server.metrics_port = port
    yield server
    stop_server(server)


def scrape(server) -> dict:
    with server.client("ops") as c:          # a new connection: any worker may answer
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    return parse(r.text)


def worker_pids(samples: dict) -> set[str]:
    return {dict(labels)["pid"] for name, labels in samples
            if name == "process_resident_memory_bytes"}


def requests_by_process(home) -> dict[str, float]:
    """Requests each worker counted, from its own counter file."""
    out = {}
    for f in (home / multiproc.DIR_NAME).glob("serve-*/counter_*.db"):
        total = 0.0
        for metric in MultiProcessCollector.merge([str(f)]):
            if metric.name == "resources_http_requests":
                total += sum(s.value for s in metric.samples)
        out[f.stem.split("_")[-1]] = total
    return out


def check_totals(samples: dict) -> None:
    retained = dict(tier="retained", connection="platform")
    assert value(samples, "resources_persists_total", kind="created", **retained) == len(SIZES)
    assert value(samples, "resources_persist_bytes_total", **retained) == sum(SIZES)
    assert value(samples, "resources_http_requests_total", method="POST",
                 route="/v1/{ws}/resources", status="201") == len(SIZES)
    assert value(samples, "resources_http_request_bytes_total",
                 route="/v1/{ws}/resources") == sum(SIZES)
    assert value(samples, "resources_http_request_duration_seconds_count", method="POST",
                 route="/v1/{ws}/resources", status="201") == len(SIZES)
    assert value(samples, "resources_http_requests_total", method="GET", route=ROUTE,
                 status="400") == BAD_REQUESTS
    assert value(samples, "resources_extractions_total", extractor="text",
                 outcome="ok") == len(SIZES)


def test_counters_add_up_exactly_across_workers(srv):
    # Both workers up (each reports its process series) before the traffic.
    eventually(lambda: len(worker_pids(scrape(srv))) == 2, 30)

    def persist(i: int) -> None:
        with srv.client("write") as c:        # one connection per request: spread
            ok_body(upload(c, bytes([65 + i]) * SIZES[i], {"filename": f"w{i}.txt"}), 201)

    def bad(_: int) -> None:
        with srv.client("write") as c:
            error_body(c.get("/v1/ws-acme/resources/by-uri"), 400)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(persist, range(len(SIZES))))
        list(pool.map(bad, range(BAD_REQUESTS)))
    # Both processes counted requests (this traffic and the scrapes above): the totals
    # below really are sums over processes.
    served = requests_by_process(srv.home)
    assert sum(1 for n in served.values() if n > 0) == 2, served
    for _ in range(6):
        check_totals(scrape(srv))
    r = httpx.get(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10)
    assert r.status_code == 200
    check_totals(parse(r.text))


def test_one_snapshot_and_per_worker_process_series(srv):
    with srv.client("write") as c:
        usage = ok_body(c.get("/v1/ws-acme/usage"))["data"]
    want = {g["tier"]: g["bytes"] for g in usage["by-tier"]}

    def fresh():
        samples = scrape(srv)
        got = {t: value(samples, "resources_storage_bytes", workspace="ws-acme", tier=t)
               for t in want}
        return samples if got == want else None
    samples = eventually(fresh, 30)
    # One series per gauge (one process computed them), not one per worker.
    assert sum(1 for name, _ in samples if name == "resources_index_documents") == 1
    assert sum(1 for name, _ in samples if name == "resources_disk_free_bytes") == 1
    pids = worker_pids(samples)
    assert len(pids) == 2
    for pid in pids:
        assert value(samples, "process_resident_memory_bytes", pid=pid) > 0
        assert value(samples, "process_open_fds", pid=pid) > 0
    assert value(samples, "process_cpu_seconds_total") > 0


def test_a_killed_workers_counts_stay_and_its_live_series_go(srv):
    pids = worker_pids(scrape(srv))
    victim = int(sorted(pids)[0])
    os.kill(victim, signal.SIGKILL)
    # The parent marks it dead; uvicorn starts a replacement that reports itself.
    eventually(lambda: (lambda p: str(victim) not in p and len(p) == 2)(
        worker_pids(scrape(srv))), 30)
    for _ in range(4):
        check_totals(scrape(srv))


def test_the_directory_is_fresh_at_start(tmp_path, monkeypatch):
    parent = tmp_path / multiproc.DIR_NAME
    gone = parent / "serve-999999999"           # a server that no longer runs
    live = parent / f"serve-{os.getppid()}"     # one that does (this test's parent)
    mine = parent / f"serve-{os.getpid()}"      # an earlier run with this pid
    for d in (gone, live, mine):
        d.mkdir(parents=True)
        (d / "counter_12345.db").write_bytes(b"old run")
    monkeypatch.setenv(multiproc.ENV, "unset after this test")   # prepare() sets it
    path = multiproc.prepare(tmp_path)
    assert path == mine and list(path.iterdir()) == []
    assert not gone.exists() and (live / "counter_12345.db").exists()
    assert os.environ[multiproc.ENV] == str(path)

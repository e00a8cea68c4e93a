"""Figure 5: concurrent HTTP search: ``clients`` threads, each with its own keep-alive
httpx client, for ``seconds``, cycling through the first-page query shapes of figure 1
against the uvicorn subprocess. Requests per second and latency percentiles.

Baseline: one client alone on the same mix (requests per second), so the ratio says how
much the server gains from concurrency (on this machine's cores).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from .common import summarize
from .search_latency import http_requests


def _drive(url: str, key: str, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    requests = http_requests()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            client.get("/healthz")
            start.wait()
            i = k
            while time.perf_counter() < deadline[0]:
                path, kwargs = requests[i % len(requests)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = client.get(path, **kwargs)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies[k].append(time.perf_counter() - t0)
                if not ok:
                    errors[k] += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for per in latencies for x in per]
    return {"clients": clients, "seconds": elapsed, "requests": len(flat),
            "errors": sum(errors), "rps": len(flat) / elapsed, **summarize(flat)}


def run(url: str, key: str, clients: int, seconds: float) -> dict[str, Any]:
    single = _drive(url, key, 1, max(1.0, seconds / 3))
    loaded = _drive(url, key, clients, seconds)
    return {"load": loaded, "single_client": single,
            "rps_vs_single": loaded["rps"] / single["rps"] if single["rps"] else float("nan")}

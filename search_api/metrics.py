"""Prometheus metrics of `serve`: what happened (counters, histograms) and how things are
(gauges refreshed in the background).

Counters and histograms are fed by the request middleware (``observe.py``) and by the
core's events (``storage.events``: persist, extract, index.commit, gc, kv), so the core
never imports this module. Gauges that need a catalog scan (storage usage per workspace
and tier) are computed by a background thread every ``metrics_refresh_seconds`` and
served from that snapshot: a scrape never scans anything.

Every metric lives in the app's own ``CollectorRegistry`` (not the process-global one),
so several apps in one test process do not collide. The names are listed in
docs/operations.md.

Multiprocess mode (`serve --workers N`, ``PROMETHEUS_MULTIPROC_DIR`` set before the
workers start): counters and histograms are written to per-process files and a scrape
sums them; the snapshot gauges are computed by one process and shared through a file;
process figures are per worker. The details are in ``multiproc.py``.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any, Iterable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               ProcessCollector, disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage import events

from . import multiproc

from .logs import log
from .loops import Periodic

logger = logging.getLogger("resources.jobs")

# The *_created series double every counter's output and no alert or dashboard uses them.
disable_created_metrics()

#: Request latency: sub-millisecond searches up to long streamed uploads.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Extraction: text is milliseconds, a PDF is bounded by its time limit (5 s default).
EXTRACT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class LagTracker:
    """How long the oldest change has waited for the index (the outbox has no timestamp:
    the first time a given oldest row id is seen starts its clock). Resolution is the
    interval between observations (refresh and /readyz)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._oldest: int | None = None
        self._since = 0.0

    def observe(self, oldest_id: int | None) -> float:
        now = time.monotonic()
        with self._lock:
            if oldest_id is None:
                self._oldest = None
                return 0.0
            if oldest_id != self._oldest:
                self._oldest, self._since = oldest_id, now
            return now - self._since


def index_lag(service: Any, tracker: LagTracker) -> tuple[int, float]:
    """(changes waiting for the index, seconds the oldest has waited)."""
    backlog = service.catalog.changes.backlog()        # behind the slowest index, in the log
    if not backlog:
        return 0, tracker.observe(None)
    return backlog, tracker.observe(service.catalog.changes.head() - backlog + 1)


class Snapshot(Collector):
    """The background-computed gauges, swapped in whole so a scrape sees one refresh."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(self.families)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        #: Multiprocess mode: the directory the workers share (None: one process).
        self.multiproc_dir = multiproc.directory()
        self.process: multiproc.ProcessMetrics | None = None
        if self.multiproc_dir is None:
            ProcessCollector(registry=r)      # process_resident_memory_bytes, _open_fds, ...
        else:
            self.process = multiproc.ProcessMetrics()
            self.refresh_lock = multiproc.RefreshLock(self.multiproc_dir)
            self.scrape_registry = multiproc.scrape_registry(self.multiproc_dir)
        self.http_requests = Counter(
            "resources_http_requests", "HTTP requests by route template and status",
            ["method", "route", "status"], registry=r)
        self.http_duration = Histogram(
            "resources_http_request_duration_seconds",
            "HTTP request latency, first byte in to last byte out",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=r)
        self.http_bytes_in = Counter("resources_http_request_bytes",
                                     "Request body bytes received", ["route"], registry=r)
        self.http_bytes_out = Counter("resources_http_response_bytes",
                                      "Response body bytes sent", ["route"], registry=r)
        self.persists = Counter(
            "resources_persists", "Persists committed (created: a new resource; "
            "replaced: a new version at the same place)",
            ["tier", "connection", "kind"], registry=r)
        self.persist_bytes = Counter("resources_persist_bytes", "Bytes of committed persists",
                                     ["tier", "connection"], registry=r)
        self.extractions = Counter("resources_extractions", "Text extractions by outcome",
                                   ["extractor", "outcome"], registry=r)
        self.extraction_seconds = Histogram("resources_extraction_duration_seconds",
                                            "Text extraction time", ["extractor"],
                                            buckets=EXTRACT_BUCKETS, registry=r)
        self.index_commits = Counter("resources_index_commits", "Index commits", registry=r)
        self.index_commit_documents = Counter("resources_index_commit_documents",
                                              "Documents written by index commits", registry=r)
        self.index_expired = Counter("resources_index_expired_documents",
                                     "Documents of expired resources deleted from the index "
                                     "ahead of gc", registry=r)
        self.index_commit_seconds = Histogram("resources_index_commit_duration_seconds",
                                              "Index commit time (write, commit, merge wait)",
                                              buckets=COMMIT_BUCKETS, registry=r)
        self.gc_runs = Counter("resources_gc_runs", "Retention sweeps run", registry=r)
        self.gc_removed = Counter("resources_gc_removed", "Expired items removed by gc",
                                  ["kind"], registry=r)
        self.gc_removed_bytes = Counter("resources_gc_removed_bytes",
                                        "Bytes of expired resources removed by gc", registry=r)
        self.kv_ops = Counter("resources_kv_operations", "KV store operations",
                              ["op", "outcome"], registry=r)
        self.snapshot = Snapshot()
        r.register(self.snapshot)
        self.lag = LagTracker()

    # -- events from the core -------------------------------------------------------------
    def on_event(self, name: str, f: dict[str, Any]) -> None:
        if name == "persist":
            kind = "created" if f["created"] else "replaced"
            self.persists.labels(f["tier"], f["connection"], kind).inc()
            self.persist_bytes.labels(f["tier"], f["connection"]).inc(f["bytes"])
        elif name == "extract":
            self.extractions.labels(f["extractor"], f["outcome"]).inc()
            self.extraction_seconds.labels(f["extractor"]).observe(f["seconds"])
        elif name == "index.commit":
            self.index_commits.inc()
            self.index_commit_documents.inc(f["documents"])
            self.index_commit_seconds.observe(f["seconds"])
        elif name == "index.expired":
            self.index_expired.inc(f["documents"])
        elif name == "gc":
            self.gc_runs.inc()
            self.gc_removed.labels("resource").inc(f["removed"])
            self.gc_removed.labels("kv").inc(f["kv_removed"])
            self.gc_removed_bytes.inc(f["removed_bytes"])
        elif name == "kv":
            self.kv_ops.labels(f["op"], f["outcome"]).inc()

    def attach(self) -> None:
        events.subscribe(self.on_event)

    def detach(self) -> None:
        events.unsubscribe(self.on_event)

    def exit_process(self) -> None:
        """Multiprocess mode, this worker stopping: its live gauges go (its counters stay:
        what it counted still happened), and another worker may refresh the snapshot."""
        if self.multiproc_dir is not None:
            self.refresh_lock.release()
            multiproc.mark_dead(os.getpid(), self.multiproc_dir)

    # -- requests -------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float,
                        bytes_in: int, bytes_out: int) -> None:
        code = str(status)
        self.http_requests.labels(method, route, code).inc()
        self.http_duration.labels(method, route, code).observe(seconds)
        if bytes_in:
            self.http_bytes_in.labels(route).inc(bytes_in)
        if bytes_out:
            self.http_bytes_out.labels(route).inc(bytes_out)

    # -- background gauges ----------------------------------------------------------------
    def refresh(self, service: Any) -> None:
        """Recompute the snapshot gauges (one grouped catalog query, index and disk). In
        multiprocess mode: this worker's process figures, and the snapshot only in the
        process that holds the refresh lock."""
        if self.multiproc_dir is not None:
            assert self.process is not None
            self.process.update()
            if not self.refresh_lock.held():
                return
        fams = []
        usage_bytes = GaugeMetricFamily("resources_storage_bytes",
                                        "Stored bytes per workspace and tier (catalog)",
                                        labels=["workspace", "tier"])
        usage_count = GaugeMetricFamily("resources_storage_resources",
                                        "Resources per workspace and tier (catalog)",
                                        labels=["workspace", "tier"])
        for ws, tier, count, size in service.catalog.resources.usage_by_tier():
            usage_bytes.add_metric([ws, tier], size)
            usage_count.add_metric([ws, tier], count)
        fams += [usage_bytes, usage_count]
        changes, seconds = index_lag(service, self.lag)
        fams.append(GaugeMetricFamily("resources_index_lag_changes",
                                      "Catalog changes waiting for the index", value=changes))
        fams.append(GaugeMetricFamily("resources_index_lag_seconds",
                                      "Age of the oldest change waiting for the index",
                                      value=seconds))
        try:
            fams.append(GaugeMetricFamily("resources_index_documents",
                                          "Documents in the live index (every partition)",
                                          value=service.index.count()))
            fams.append(GaugeMetricFamily("resources_index_segments",
                                          "Segments of the live index (every partition)",
                                          value=service.index.segments()))
        except Exception:  # noqa: BLE001 - a broken index shows as missing gauges + readyz
            pass
        try:
            free = shutil.disk_usage(service.settings.home).free
            fams.append(GaugeMetricFamily("resources_disk_free_bytes",
                                          "Free bytes on the data home's file system",
                                          value=free))
        except OSError:
            pass
        fams.append(GaugeMetricFamily("resources_metrics_refresh_timestamp_seconds",
                                      "When these gauges were computed (unix time)",
                                      value=time.time()))
        self.snapshot.families = fams
        if self.multiproc_dir is not None:
            multiproc.publish(self.multiproc_dir, fams)

    def render(self) -> tuple[bytes, str]:
        if self.multiproc_dir is not None:
            assert self.process is not None
            self.process.update()
            return generate_latest(self.scrape_registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Refresher(Periodic):
    """The thread that keeps the snapshot gauges fresh (first refresh at start)."""

    def __init__(self, service: Any, metrics: Metrics, interval: float) -> None:
        super().__init__("metrics-refresh", interval, first_now=True)
        self.service, self.metrics = service, metrics

    def tick(self) -> None:
        started = time.monotonic()
        try:
            self.metrics.refresh(self.service)
            log(logger, logging.DEBUG, "metrics refreshed", event="job", job="metrics-refresh",
                duration_ms=round((time.monotonic() - started) * 1000, 2))
        except Exception as exc:  # noqa: BLE001 - keep refreshing, say why
            log(logger, logging.ERROR, "metrics refresh failed", event="job",
                job="metrics-refresh", error=repr(exc))


def serve_loopback(metrics: Metrics | CollectorRegistry, port: int) -> Any:
    """A key-less /metrics on 127.0.0.1:port (for a local Prometheus agent) of the app's
    metrics, or of a registry (the `serve` parent's, in multiprocess mode). Returns the
    server; ``shutdown()`` stops it."""
    from prometheus_client import start_http_server
    registry = metrics if isinstance(metrics, CollectorRegistry) else \
        metrics.scrape_registry if metrics.multiproc_dir is not None else metrics.registry
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server


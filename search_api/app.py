"""The Starlette app: routes, the one place core errors become HTTP statuses, and the
background work of `serve` (index catch-up and the retention sweep)."""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import os
import sys
import time
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from indexer.follower import IndexFollower
from storage.config import Settings
from storage.errors import RangeNotSatisfiable, ResourceError, translate_unexpected

from .health import ops_routes
from .kv_routes import kv_routes
from .logs import log
from .loops import Periodic
from .metrics import Metrics, Refresher, serve_loopback
from .observe import ObserveMiddleware, route_template
from .opsconfig import OpsSettings
from .quota_routes import quota_routes
from .routes import routes

from .service import ResourceService

logger = logging.getLogger("resources.http")
jobs = logging.getLogger("resources.jobs")


async def resource_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ResourceError)
    headers = {}
    if isinstance(exc, RangeNotSatisfiable) and "size" in exc.details:
        headers["Content-Range"] = f"bytes */{exc.details['size']}"
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "resource not found" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": {"code": code, "message": message}},
                        status_code=exc.status_code)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    typed = translate_unexpected(exc)
    if typed is not None:
        return await resource_error(request, typed)
    # The route template, never request.url.path: a signed-URL token lives in the path.
    logger.error("internal error on %s %s: %r", request.method, route_template(request.scope),
                 exc, exc_info=exc)
    return JSONResponse({"error": {"code": "internal", "message": "internal error"}},
                        status_code=500)


class Background(Periodic):
    """The periodic gc of `serve` (the index follows in its own thread: IndexFollower)."""

    def __init__(self, service: ResourceService, sync_interval: float = 1.0) -> None:
        # Nodes sharing a catalog heartbeat at once: listed (and waited for) from the start.
        super().__init__("background", sync_interval, first_now=service.catalog.shared)
        self.service = service
        self.sync_interval = sync_interval
        self.next_gc = service.now() + service.settings.gc_interval_seconds

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
        if self.service.catalog.shared:
            try:
                self.service.cluster.leave()
            except Exception:  # noqa: BLE001 - a dead catalog: the heartbeat goes stale
                pass

    def tick(self) -> None:
        svc = self.service
        job = "index-sync"
        try:
            shared = svc.catalog.shared
            if shared:
                job = "heartbeat"
                svc.cluster.heartbeat()
            gc = getattr(svc, "gc", None)
            # One sweeper across `serve --workers N`: the process that writes the
            # index (two sweeps could race a slot rewrite that reuses an id).
            follower = getattr(svc, "follower", None)
            leading = follower is None or follower.leading
            if gc is not None and leading and svc.now() >= self.next_gc:
                self.next_gc = svc.now() + svc.settings.gc_interval_seconds
                # Nodes sharing a catalog: the one that claims the due time sweeps.
                if not shared or svc.catalog.nodes.claim_due(
                        "gc", svc.now(), svc.settings.gc_interval_seconds):
                    job = "gc"
                    started = time.monotonic()
                    result = gc(dry_run=False)
                    _job_line("gc", started, removed=result["count"], bytes=result["bytes"],
                              kv_removed=len(result["kv-removed"]))
        except Exception as exc:  # noqa: BLE001 - keep the loop alive, say why
            log(jobs, logging.ERROR, f"background {job} failed", event="job", job=job,
                error=repr(exc))


def _job_line(job: str, started: float, **fields: Any) -> None:
    """One structured line per background job that did something."""
    log(jobs, logging.INFO, job, event="job", job=job,
        duration_ms=round((time.monotonic() - started) * 1000, 3), **fields)


class _App(Starlette):
    """Starlette with the request middleware outermost: it sees the 500 that the
    server-error handler sends (status, X-Request-Id) like any other response."""

    def build_middleware_stack(self) -> Any:
        return ObserveMiddleware(super().build_middleware_stack(), self.state.metrics)


def create_app(service: ResourceService | None = None, settings: Settings | None = None,
               background: bool = True, ops: OpsSettings | None = None,
               lead: bool = True) -> Starlette:
    """The app. With ``background`` (serve) an index follower runs and writes are
    acknowledged once durable (``RESOURCES_WRITE_ACK=indexed``: once searchable);
    without it, writes keep waiting for the index, as in the library. ``lead=False``:
    this process never writes the index (a separate `resources indexer` does)."""
    service = service or ResourceService(settings or Settings.from_env())
    ops = ops or OpsSettings.from_env()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bg = Background(service) if background else None
        refresher = Refresher(service, metrics, ops.metrics_refresh_seconds) \
            if background else None
        loopback = serve_loopback(metrics, ops.metrics_port) if ops.metrics_port else None
        metrics.attach()
        follower = unlisten = None
        embedder = None
        if bg:
            # A shared catalog wakes the follower by LISTEN/NOTIFY: polling the database
            # 20 times a second per node is then only the fallback, at 2 a second.
            shared = service.catalog.shared
            follower = IndexFollower(service.index, lead=lead, log=service.log,
                                     poll=0.5 if shared else 0.05,
                                     clock=lambda: service.now()).start()
            unlisten = service.catalog.database.listen(follower.nudge) if shared else None
            service.follower = follower
            service.wait_default = service.settings.write_ack == "indexed"
            embedder = service.start_semantic_follower(lead)
        for thread in (bg, refresher):
            if thread:
                thread.start()
        try:
            yield
        finally:
            for thread in (bg, refresher):
                if thread:
                    thread.stop()
            if embedder is not None:
                service.semantic_follower = None
                embedder.stop()
            if follower is not None and unlisten is not None:
                unlisten()
            if follower is not None:
                service.wait_default = True
                service.follower = None
                follower.stop()
            metrics.detach()
            metrics.exit_process()
            if loopback is not None:
                loopback.shutdown()

    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from .web import web_routes               # the operator web view and picker (/ui/)
    from .web_base import STATIC_DIR
    from .web_picker import picker_web_routes  # the embeddable picker (before /ui/{ws})
    from .picker_routes import picker_routes   # its API: origins and sessions
    from .web_thumbs import thumb_routes       # thumbnails of resource pages
    from .web_runs import run_routes           # run zip and ephemeral cleanup
    from .web_lists import fallback_routes     # an HTML 404 for unknown /ui/ paths (last)
    ui_static = Mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    from .breyta import breyta_routes   # the Breyta CLI face (/api/...), errors its own
    from . import breyta_openapi  # noqa: F401 - registers its OpenAPI part
    from .cluster_routes import cluster_routes   # nodes sharing the catalog
    app = _App(routes=[*ops_routes, *quota_routes, *routes, *cluster_routes, *kv_routes,
                       *picker_routes,
                       ui_static, *picker_web_routes, *thumb_routes, *run_routes, *web_routes,
                       *fallback_routes, *breyta_routes],
                    lifespan=lifespan,
                    exception_handlers={
        ResourceError: resource_error, HTTPException: http_error,
        # Handled in place (a 507 for a full disk, a 503 for a damaged catalog), so the
        # connection stays usable; only what is left reaches the server-error handler.
        sqlite3.DatabaseError: internal_error, OSError: internal_error,
        Exception: internal_error})
    app.state.service = service
    app.state.metrics = metrics
    app.state.ops = ops
    return app


def app_from_env() -> Starlette:
    """What each process of `serve --workers N` runs (uvicorn imports it by name): the
    settings come from the environment the parent set up."""
    from . import logs
    ops = OpsSettings.from_env()
    logs.configure(ops.log_level, ops.log_format)
    service = ResourceService(Settings.from_env(), log=logs.service_logger())
    return create_app(service, ops=ops, lead=os.environ.get("RESOURCES_INDEXER", "1") != "0")

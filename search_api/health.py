"""Health that tells the truth: /healthz (the process answers), /readyz (it can do its
job), and the keyed /metrics route.

/healthz is liveness only: 200 while the event loop answers, so an orchestrator restarts
a hung process and nothing else. Without a service-admin key it says nothing more (no
document counts: they would be a cross-tenant figure); with one it adds the old details.

/readyz runs every check and answers 200, or 503 with the failing checks named in the
message and each check's verdict in ``details``: take the instance out of rotation, do
not restart it (a full disk is not fixed by a restart).
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storage.errors import Unauthorized, Unavailable

from . import envelope
from .auth import SERVICE_ADMIN, Principal
from .metrics import Metrics, index_lag
from .observe import note_principal
from .opsconfig import OpsSettings

Check = dict[str, Any]


def _ok(detail: str = "ok", **extra: Any) -> Check:
    return {"ok": True, "detail": detail, **extra}


def _fail(detail: str, **extra: Any) -> Check:
    return {"ok": False, "detail": detail, **extra}


def check_catalog(service: Any) -> Check:
    """Reachable and writable: the catalog takes its write lock and writes a row, then
    rolls back, with a short wait of its own so a probe never hangs."""
    problem = service.catalog.probe_writable(2.0)
    return _fail(problem) if problem else _ok()


def check_connection(name: str, backend: Any) -> Check:
    """The backend's own ``ready()``: the local one checks its root and staging folders
    exist and are writable; the default probes a key that does not exist."""
    try:
        backend.ready()
        return _ok()
    except Unavailable as exc:
        return _fail(f"connection {name}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure means not reachable
        return _fail(f"connection {name} unreachable: {type(exc).__name__}")


def check_disk(service: Any, ops: OpsSettings) -> Check:
    try:
        free = shutil.disk_usage(service.settings.home).free
    except OSError as exc:
        return _fail(f"data home unreadable: {exc.strerror}")
    if free < ops.ready_min_free_bytes:
        return _fail(f"{free:,} bytes free, below the threshold of "
                     f"{ops.ready_min_free_bytes:,}", free_bytes=free)
    return _ok(free_bytes=free)


def check_index(service: Any, metrics: Metrics, ops: OpsSettings) -> Check:
    index = service.index
    link = index.link
    try:
        target = os.readlink(link) if os.path.islink(link) else None
        directory = link.parent / target if target else None
        if directory is None or not directory.is_dir():
            return _fail("index directory missing (run `resources reindex`)")
        if not index._version_ok(directory):
            return _fail("index schema version file missing or stale "
                         "(run `resources reindex`)")
        index.count()                      # opens and reads every live partition
    except Exception as exc:  # noqa: BLE001 - tantivy errors are ValueError/RuntimeError
        return _fail(f"index unreadable: {type(exc).__name__}")
    changes, seconds = index_lag(service, metrics.lag)
    if changes > ops.ready_max_index_lag:
        return _fail(f"{changes} changes wait for the index (threshold "
                     f"{ops.ready_max_index_lag})", lag_changes=changes)
    if seconds > ops.ready_max_index_lag_seconds:
        return _fail(f"the oldest change has waited {seconds:.0f} s for the index "
                     f"(threshold {ops.ready_max_index_lag_seconds:g} s)",
                     lag_changes=changes, lag_seconds=round(seconds, 1))
    return _ok(lag_changes=changes, lag_seconds=round(seconds, 1))


def readiness(service: Any, metrics: Metrics, ops: OpsSettings) -> dict[str, Check]:
    checks: dict[str, Callable[[], Check]] = {
        "catalog": lambda: check_catalog(service),
        **{f"connection:{name}": (lambda n=name, b=backend: check_connection(n, b))
           for name, backend in service.backends.items()},
        "disk": lambda: check_disk(service, ops),
        "index": lambda: check_index(service, metrics, ops),
    }
    out = {}
    for name, run in checks.items():
        try:
            out[name] = run()
        except Exception as exc:  # noqa: BLE001 - a crashing check is a failing check
            out[name] = _fail(f"check failed: {type(exc).__name__}")
    return out


# -- routes -----------------------------------------------------------------------------
async def service_admin(request: Request) -> Principal:
    """A key with the service.admin scope (operators: metrics, quotas, health details)."""
    service = request.app.state.service
    p = await run_in_threadpool(service.keys.authenticate, request.headers.get("authorization"))
    note_principal(request, p.key_id, p.workspace)
    if SERVICE_ADMIN not in p.scopes:
        from storage.errors import Forbidden
        raise Forbidden(f"this key lacks the {SERVICE_ADMIN} scope")
    return p


async def healthz(request: Request) -> Response:
    data: dict[str, Any] = {"ok": True}
    if request.headers.get("authorization"):
        try:
            await service_admin(request)
        except Exception:  # noqa: BLE001 - liveness never fails on a bad key
            return JSONResponse(envelope.plain(data))
        details = await run_in_threadpool(request.app.state.service.health)
        data.update({k: v for k, v in details.items() if k != "ok"})
    return JSONResponse(envelope.plain(data))


async def readyz(request: Request) -> Response:
    app = request.app
    checks = await run_in_threadpool(readiness, app.state.service, app.state.metrics,
                                     app.state.ops)
    failing = [name for name, c in checks.items() if not c["ok"]]
    if failing:
        message = "not ready: " + "; ".join(f"{n}: {checks[n]['detail']}" for n in failing)
        return JSONResponse({"error": {"code": "not_ready", "message": message,
                                       "details": {"failing": failing, "checks": checks}}},
                            status_code=503)
    return JSONResponse(envelope.plain({"ready": True, "checks": checks}))


async def metrics_route(request: Request) -> Response:
    if not request.headers.get("authorization"):
        raise Unauthorized("missing API key: /metrics needs a key with the "
                           f"{SERVICE_ADMIN} scope (or use serve --metrics-port)")
    await service_admin(request)
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type.split(";")[0],
                    headers={"Content-Type": content_type})


ops_routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]

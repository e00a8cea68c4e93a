"""The Starlette app: routes, the one place core errors become HTTP statuses, and the
background work of `serve` (index catch-up and the retention sweep)."""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from storage.config import Settings
from storage.errors import RangeNotSatisfiable, ResourceError

from .kv_routes import kv_routes
from .routes import routes
from .service import ResourceService


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
    print(f"internal error on {request.method} {request.url.path}: {exc!r}", file=sys.stderr)
    return JSONResponse({"error": {"code": "internal", "message": "internal error"}},
                        status_code=500)


class Background:
    """Index catch-up (other processes' writes, busy writers) and periodic gc."""

    def __init__(self, service: ResourceService, sync_interval: float = 1.0) -> None:
        self.service = service
        self.sync_interval = sync_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        svc = self.service
        next_gc = svc.now() + svc.settings.gc_interval_seconds
        while not self._stop.wait(self.sync_interval):
            try:
                if svc.catalog.outbox_size():
                    svc.index.try_sync()
                gc = getattr(svc, "gc", None)
                if gc is not None and svc.now() >= next_gc:
                    next_gc = svc.now() + svc.settings.gc_interval_seconds
                    gc(dry_run=False)
            except Exception as exc:  # noqa: BLE001 - keep the loop alive, say why
                print(f"background: {exc!r}", file=sys.stderr)


def create_app(service: ResourceService | None = None, settings: Settings | None = None,
               background: bool = True) -> Starlette:
    service = service or ResourceService(settings or Settings.from_env())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bg = Background(service) if background else None
        if bg:
            bg.start()
        try:
            yield
        finally:
            if bg:
                bg.stop()

    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from .web import STATIC_DIR, web_routes   # the operator web view and picker (/ui/)
    from .web_picker import picker_web_routes  # the embeddable picker (before /ui/{ws})
    from .picker_routes import picker_routes   # its API: origins and sessions
    from .web_thumbs import thumb_routes       # thumbnails of resource pages
    from .web_runs import run_routes           # run zip and ephemeral cleanup
    from .web_lists import fallback_routes     # an HTML 404 for unknown /ui/ paths (last)
    ui_static = Mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    from .breyta import breyta_routes   # the Breyta CLI face (/api/...), errors its own
    app = Starlette(routes=[*routes, *kv_routes, *picker_routes, ui_static,
                            *picker_web_routes, *thumb_routes, *run_routes, *web_routes,
                            *fallback_routes, *breyta_routes],
                    lifespan=lifespan,
                    exception_handlers={
        ResourceError: resource_error, HTTPException: http_error, Exception: internal_error})
    app.state.service = service
    return app

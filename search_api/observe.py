"""The request middleware: request id, one log line and the request metrics per request.

A pure ASGI middleware (not BaseHTTPMiddleware): it wraps ``receive`` and ``send`` to
count bytes and never buffers a body, so streamed uploads and downloads stay streamed,
and the duration covers the whole body, not only the handler.

What the line carries comes from safe places only: the route *template* (a signed-URL
token or a kv key sits in the raw path), the workspace path parameter, and the key *id*
the auth step put in ``scope["state"]`` (``note_principal``); never a header value other
than a well-formed ``X-Request-Id``.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable, MutableMapping

from .logs import log, request_id_var
from .metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("resources.http")

#: A client's X-Request-Id is honoured when it looks like an id (no spaces, no control
#: characters, bounded): anything else could forge log structure, so a fresh one is made.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
#: Probes and scrapes log at debug: every 10 s from a load balancer would drown the rest.
QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}


def note_principal(request: Any, key_id: str, workspace: str) -> None:
    """Called by the auth helpers: the key id and workspace for the request line."""
    state = request.scope.setdefault("state", {})
    state["key_id"] = key_id
    state["workspace"] = workspace


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "<unmatched>"          # bounded label: never the raw path of a 404
    return path


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        scope.setdefault("state", {})
        counts = {"in": 0, "out": 0, "status": 500}
        raw_rid = rid.encode()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", raw_rid))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, counting_receive, tagging_send)
        except BaseException as exc:      # the server's error handler answers 500
            error = exc
            counts["status"] = 500
            raise
        finally:
            self._record(scope, started, counts, error)
            request_id_var.reset(token)

    def _record(self, scope: Scope, started: float, counts: dict[str, int],
                error: BaseException | None) -> None:
        seconds = time.monotonic() - started
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        route = route_template(scope)
        status = counts["status"]
        self.metrics.observe_request(method, route, status, seconds, counts["in"], counts["out"])
        state = scope.get("state") or {}
        params = scope.get("path_params") or {}
        level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else \
            logging.ERROR if status >= 500 else logging.INFO
        log(logger, level, "request", event="request", method=method, route=route,
            status=status, duration_ms=round(seconds * 1000, 3), bytes_in=counts["in"],
            bytes_out=counts["out"], workspace=state.get("workspace") or params.get("ws"),
            key_id=state.get("key_id"),
            error=type(error).__name__ if error is not None else None)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return value.decode("latin-1").strip()
            except Exception:  # noqa: BLE001 - an undecodable id is replaced
                return None
    return None

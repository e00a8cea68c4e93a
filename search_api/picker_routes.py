"""HTTP routes of the embeddable picker's API: the allowed origins (workspace.admin) and
picker sessions minted by an embedding app's backend (resources.read).

The page itself lives under /ui/picker (search_api/web_picker.py)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage.clock import rfc3339

from . import envelope
from .auth import ADMIN
from .openapi import EXTRA_PATHS, _err, _ok, _p
from ._http import json_body, ok, principal, svc


async def picker_origins(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, ADMIN)
    service = svc(request)
    if request.method == "PUT":
        body = await json_body(request)
        origins = body.get("origins") if isinstance(body, dict) else None
        items = await run_in_threadpool(service.set_picker_origins, ws, origins)
    else:
        items = await run_in_threadpool(service.picker_origins, ws)
    return ok(envelope.plain({"origins": items}, total=len(items)))


async def picker_sessions(request: Request) -> Response:
    ws = request.path_params["ws"]
    service = svc(request)
    p = await run_in_threadpool(service.keys.authenticate, request.headers.get("authorization"))
    body = await json_body(request)
    token, session = await run_in_threadpool(service.mint_picker_session, p, ws, body)
    base = service.settings.public_url
    data = {"token": token, "url": f"{base}/ui/picker?token={token}",
            "origin": session.origin, "slot": session.slot, "accept": session.accept,
            "expires-at": rfc3339(session.expires)}
    return ok(envelope.plain(data), 201)


picker_routes = [
    Route("/v1/{ws}/picker/origins", picker_origins, methods=["GET", "PUT"]),
    Route("/v1/{ws}/picker/sessions", picker_sessions, methods=["POST"]),
]


def _paths() -> dict:
    ws = _p("ws", "Workspace id")
    errors = {"400": _err("Bad request"), "401": _err("Missing or bad key"),
              "403": _err("Missing scope, or origin not allowed"), "404": _err("Not found")}
    origins_body = {"type": "object", "required": ["origins"], "properties": {
        "origins": {"type": "array", "maxItems": 20, "items": {"type": "string"},
                    "description": "Exact origins, scheme://host[:port]"}}}
    session_body = {"type": "object", "required": ["origin"], "properties": {
        "origin": {"type": "string", "description": "The embedding page's origin"},
        "slot": {"type": "string"}, "accept": {"type": "string"},
        "ttl": {"type": "integer", "minimum": 60, "maximum": 3600}}}
    secured = [{"bearer": []}]
    return {
        "/v1/{ws}/picker/origins": {
            "get": {"summary": "Origins allowed to embed the picker (workspace.admin)",
                    "security": secured, "parameters": [ws],
                    "responses": {"200": _ok("Envelope"), **errors}},
            "put": {"summary": "Replace the picker's allowed origins (workspace.admin)",
                    "security": secured, "parameters": [ws],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": origins_body}}},
                    "responses": {"200": _ok("Envelope"), **errors}}},
        "/v1/{ws}/picker/sessions": {
            "post": {"summary": "Mint a short-lived picker session for an allowed origin "
                                "(from the embedding app's backend, resources.read)",
                     "security": secured, "parameters": [ws],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": session_body}}},
                     "responses": {"201": _ok("Envelope", "Token and picker URL"),
                                   **errors}}},
    }


EXTRA_PATHS.append(_paths)

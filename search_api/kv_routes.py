"""HTTP routes of the KV pointer store (`/v1/{ws}/kv`), calling the service only."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from indexer.query import parse_limit
from storage.errors import BadRequest

from . import envelope
from .auth import READ, WRITE
from .openapi import EXTRA_PATHS, _err, _ok, _p, _q
from ._http import json_body, ok, principal, svc


async def kv_put(request: Request) -> Response:
    ws, key = request.path_params["ws"], request.path_params["key"]
    await principal(request, WRITE)
    body = await json_body(request, limit=2 * 1024 * 1024)
    if not isinstance(body, dict) or "value" not in body:
        raise BadRequest('body must be {"value": <JSON>, "ttl": N, "if-version": V}')
    unknown = set(body) - {"value", "ttl", "if-version"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    entry, created = await run_in_threadpool(svc(request).kv.set, ws, key, body["value"],
                                             body.get("ttl"), body.get("if-version"))
    return ok(envelope.plain(entry.to_json(), created=created), 201 if created else 200)


async def kv_get(request: Request) -> Response:
    ws, key = request.path_params["ws"], request.path_params["key"]
    await principal(request, READ)
    service = svc(request)
    entry = await run_in_threadpool(service.kv.get, ws, key)
    data = entry.to_json()
    if request.query_params.get("resolve", "").lower() in ("1", "true", "yes"):
        data["refs"] = await run_in_threadpool(service.resolve_refs, ws, entry)
    return ok(envelope.plain(data))


async def kv_delete(request: Request) -> Response:
    ws, key = request.path_params["ws"], request.path_params["key"]
    await principal(request, WRITE)
    entry = await run_in_threadpool(svc(request).kv.delete, ws, key)
    return ok(envelope.plain(entry.to_json(), deleted=True))


async def kv_list(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    qp = request.query_params
    entries, total, cursor = await run_in_threadpool(
        svc(request).kv.list, ws, qp.get("prefix", ""), parse_limit(qp.get("limit")),
        qp.get("cursor"))
    return ok(envelope.plain({"items": [e.to_json() for e in entries]}, total=total,
                             count=len(entries), **{"next-cursor": cursor}))


class KvKeyConvertor(Convertor[str]):
    """The rest of the path, newlines included: Starlette's `path` (`.*` then `$`)
    would drop a trailing %0A (writing `k` for `k\n`) and miss a middle one (404);
    taking everything lets check_key reject control characters with a 400."""
    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("kvkey", KvKeyConvertor())

kv_routes = [
    Route("/v1/{ws}/kv", kv_list, methods=["GET"]),
    Route("/v1/{ws}/kv/{key:kvkey}", kv_put, methods=["PUT"]),
    Route("/v1/{ws}/kv/{key:kvkey}", kv_get, methods=["GET"]),
    Route("/v1/{ws}/kv/{key:kvkey}", kv_delete, methods=["DELETE"]),
]


def _paths() -> dict:
    ws, key = _p("ws", "Workspace id"), _p("key", "Key, percent-encoded (1-512 characters)")
    sec = [{"bearer": []}]
    errs = {"400": _err("Bad key, value or ttl"), "401": _err("Missing or bad key"),
            "403": _err("Missing scope"), "404": _err("Not found")}
    return {
        "/v1/{ws}/kv": {"get": {"summary": "List keys by prefix, newest first", "security": sec,
                                "parameters": [ws, _q("prefix", "Key prefix"),
                                               _q("limit", "Page size", schema={
                                                   "type": "integer", "minimum": 1, "maximum": 100}),
                                               _q("cursor", "Cursor")],
                                "responses": {"200": _ok("Envelope"), **errs}}},
        "/v1/{ws}/kv/{key}": {
            "put": {"summary": "Set a value (ttl, if-version compare-and-set)", "security": sec,
                    "parameters": [ws, key],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/KvPut"}}}},
                    "responses": {"201": _ok("Envelope", "Created"), "200": _ok("Envelope", "Replaced"),
                                  "409": _err("Version conflict"), "413": _err("Value too large"),
                                  **errs}},
            "get": {"summary": "Get a value (resolve=true: records of its res:// refs)",
                    "security": sec,
                    "parameters": [ws, key, _q("resolve", "true to resolve refs", schema={
                        "type": "string", "enum": ["true", "false"]})],
                    "responses": {"200": _ok("Envelope"), **errs}},
            "delete": {"summary": "Delete a key", "security": sec, "parameters": [ws, key],
                       "responses": {"200": _ok("Envelope"), **errs}}},
    }


EXTRA_PATHS.append(_paths)

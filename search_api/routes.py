"""HTTP routes: parse the request, check the key, call the service, return the envelope.

No business logic here: every decision lives in ResourceService. Blocking calls run in
the thread pool; bodies stream in and out without being held whole.
"""
from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from indexer.filterspec import LIST_PARAMS, SEARCH_PARAMS, check_known
from storage.clock import rfc3339
from storage.config import DEFAULT_CONNECTION
from storage.errors import BadRequest, InvalidSpec

from . import envelope
from ._http import (base_url, content_response, filter_params, json_body, ok, principal,
                    stream_body, svc, wait_for)
from .auth import ADMIN, READ, WRITE

# -- resources ------------------------------------------------------------------------------
async def persist(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, WRITE)
    wait = wait_for(request)
    service = svc(request)
    job = await run_in_threadpool(service.begin_persist, ws,
                                  request.headers.get("x-persist-spec") or {},
                                  request.headers.get("idempotency-key"))
    await stream_body(request, job.write, job.writer.max_bytes, job.abort)
    try:
        result = await run_in_threadpool(job.commit, wait)
    except BaseException:
        job.abort()
        raise
    status = 201 if result.created and not result.replayed else 200
    return ok(envelope.record(result.resource, base_url(request), created=result.created,
                              replayed=result.replayed), status)


async def search(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    qp = request.query_params
    check_known(qp.keys(), SEARCH_PARAMS)
    page = await run_in_threadpool(svc(request).search, ws, qp.get("q", ""), filter_params(request),
                                   qp.get("limit"), qp.get("cursor"),
                                   qp.get("keyword-mode", "all"))
    return ok(envelope.page(page, base_url(request), search=True))


async def list_resources(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    qp = request.query_params
    check_known(qp.keys(), LIST_PARAMS)
    page = await run_in_threadpool(svc(request).list, ws, filter_params(request),
                                   qp.get("limit"), qp.get("cursor"))
    return ok(envelope.page(page, base_url(request)))


def _uri(request: Request) -> str:
    uri = request.query_params.get("uri")
    if not uri:
        raise BadRequest("query parameter uri is required")
    return uri


async def by_uri(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    res = await run_in_threadpool(svc(request).get, ws, _uri(request))
    return ok(envelope.record(res, base_url(request)))


async def delete_by_uri(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, WRITE)
    res = await run_in_threadpool(svc(request).delete, ws, _uri(request), wait_for(request))
    return ok(envelope.record(res, base_url(request), deleted=True))


async def content(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    return await run_in_threadpool(content_response, request, svc(request), ws, _uri(request))


async def signed_url(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    path, expires = await run_in_threadpool(svc(request).signed_url, ws, _uri(request),
                                            request.query_params.get("ttl"))
    return ok(envelope.plain({"url": f"{base_url(request)}{path}", "expires-at": rfc3339(expires)}))


async def signed_content(request: Request) -> Response:
    service = svc(request)
    ws, uri = service.resolve_signed(request.path_params["token"])
    return await run_in_threadpool(content_response, request, service, ws, uri)


async def search_index(request: Request) -> Response:
    ws = request.path_params["ws"]
    service = svc(request)
    # The key is checked before any parameter: no key is a 401, never a 400 first.
    p = await principal(request, READ if request.method == "GET" else WRITE)
    # Every answer carries the full record: a write-only key must not read through it.
    p.require(ws, READ)
    uri = _uri(request)
    if request.method == "GET":
        res = await run_in_threadpool(service.show_overrides, ws, uri)
    else:
        op = request.query_params.get("op", "replace")
        body = await json_body(request)
        wait = wait_for(request)
        if op == "clear":
            res = await run_in_threadpool(service.clear_overrides, ws, uri, wait)
        elif op in ("replace", "update"):
            if body is None:
                raise BadRequest("body must be a search-index JSON object")
            if isinstance(body, dict) and "search-index" in body:
                body = body["search-index"]
            res = await run_in_threadpool(service.update_overrides, ws, uri, body,
                                          op == "replace", wait)
        else:
            raise BadRequest("op must be replace, update or clear")
    data = envelope.record(res, base_url(request))
    data["meta"]["search-index"] = data["data"]["search-index"]
    return ok(data)


# -- workflow runs ----------------------------------------------------------------------
async def workflow_resources(request: Request) -> Response:
    ws = request.path_params["ws"]
    wf = request.path_params["workflow_id"]
    service = svc(request)
    if request.method == "DELETE":
        await principal(request, WRITE)
        check_known(request.query_params.keys(), ("tier", "dry-run"))
        dry_run = request.query_params.get("dry-run", "false").lower() in ("1", "true", "yes")
        removed = await run_in_threadpool(service.delete_workflow, ws, wf,
                                          request.query_params.get("tier"), dry_run,
                                          wait=wait_for(request))
        return ok(envelope.workflow_deleted(removed, dry_run))
    await principal(request, READ)
    qp = request.query_params
    check_known(qp.keys(), ("step", "limit", "cursor"))
    page = await run_in_threadpool(service.workflow_resources, ws, wf, qp.get("step"),
                                   qp.get("limit"), qp.get("cursor"))
    return ok(envelope.page(page, base_url(request)))


async def usage(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    service = svc(request)
    data = await run_in_threadpool(service.usage, ws)
    data["quotas"] = await run_in_threadpool(service.quotas.report, ws)   # limits beside usage
    return ok(envelope.plain(data))


# -- keys (workspace.admin) ---------------------------------------------------------------
async def list_keys(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, ADMIN)
    items = await run_in_threadpool(svc(request).keys.list, ws)
    return ok(envelope.plain({"items": items}, total=len(items)))


async def revoke_key(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, ADMIN)
    done = await run_in_threadpool(svc(request).keys.revoke, request.path_params["key_id"], ws)
    return ok(envelope.plain(done))


# -- slots ----------------------------------------------------------------------------------
async def put_slot(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, ADMIN)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("root"), str):
        raise InvalidSpec('body must be {"connection": "platform", "root": "reports/acme"}')
    service = svc(request)
    slot = await run_in_threadpool(service.bind_slot, ws, request.path_params["slot"],
                                   body["root"], body.get("connection") or DEFAULT_CONNECTION)
    return ok(envelope.plain(service.slot_json(slot)))


async def list_slots(request: Request) -> Response:
    ws = request.path_params["ws"]
    await principal(request, READ)
    service = svc(request)
    slots = await run_in_threadpool(service.list_slots, ws)
    return ok(envelope.plain({"items": [service.slot_json(s) for s in slots]}, total=len(slots)))


# -- identity -----------------------------------------------------------------------------
async def me(request: Request) -> Response:
    """Who the key is: the remote CLI takes its default workspace from here."""
    p = await run_in_threadpool(svc(request).keys.authenticate,
                                request.headers.get("authorization"))
    return ok(envelope.plain({"key-id": p.key_id, "workspace": p.workspace,
                              "scopes": sorted(p.scopes)}))


# /healthz, /readyz and /metrics live in health.py.
async def openapi(request: Request) -> Response:
    from .openapi import document
    return ok(document(base_url(request)))


async def api_docs(request: Request) -> Response:
    """The API reference for people, made from the same OpenAPI document."""
    from starlette.responses import HTMLResponse

    from .apidocs import render
    from .openapi import document
    return HTMLResponse(render(document(base_url(request))))


routes = [
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", api_docs, methods=["GET"]),
    Route("/signed/{token}", signed_content, methods=["GET"]),
    Route("/v1/{ws}/resources", persist, methods=["POST"]),
    Route("/v1/{ws}/resources", list_resources, methods=["GET"]),
    Route("/v1/{ws}/resources/search", search, methods=["GET"]),
    Route("/v1/{ws}/resources/by-uri", by_uri, methods=["GET"]),
    Route("/v1/{ws}/resources/by-uri", delete_by_uri, methods=["DELETE"]),
    Route("/v1/{ws}/resources/content", content, methods=["GET"]),
    Route("/v1/{ws}/resources/url", signed_url, methods=["GET"]),
    Route("/v1/{ws}/resources/search-index", search_index, methods=["GET", "POST"]),
    Route("/v1/{ws}/workflows/{workflow_id}/resources", workflow_resources,
          methods=["GET", "DELETE"]),
    Route("/v1/me", me, methods=["GET"]),
    Route("/v1/{ws}/usage", usage, methods=["GET"]),
    Route("/v1/{ws}/slots/{slot}", put_slot, methods=["PUT"]),
    Route("/v1/{ws}/slots", list_slots, methods=["GET"]),
    Route("/v1/{ws}/keys", list_keys, methods=["GET"]),
    Route("/v1/{ws}/keys/{key_id}", revoke_key, methods=["DELETE"]),
]

"""HTTP routes: parse the request, check the key, call the service, return the envelope.

No business logic here: every decision lives in ResourceService. Blocking calls run in
the thread pool; bodies stream in and out without being held whole.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from indexer.filterspec import (FILTER_NAMES, LIST_PARAMS, OPTION_NAMES, SEARCH_PARAMS,
                                check_known)
from storage.clock import rfc3339
from storage import mediatype
from storage.errors import BadRequest, InvalidSpec, StorageFull, TooLarge

from . import envelope
from .auth import ADMIN, READ, WRITE, Principal
from .observe import note_principal
from .service import ResourceService

#: After a body passes the tier limit, at most this much more is read (and dropped) so
#: the client can receive the 413 cleanly; past it the connection is simply closed.
DRAIN_AFTER_LIMIT = 64 * 1024 * 1024


def svc(request: Request) -> ResourceService:
    return request.app.state.service


def base_url(request: Request) -> str:
    return svc(request).settings.public_url


async def principal(request: Request, scope: str, workspace: str | None = None) -> Principal:
    p = await run_in_threadpool(svc(request).keys.authenticate,
                                request.headers.get("authorization"))
    note_principal(request, p.key_id, p.workspace)     # for the request log line
    p.require(workspace if workspace is not None else request.path_params["ws"], scope)
    return p


def filter_params(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (*FILTER_NAMES, *OPTION_NAMES):
        values = request.query_params.getlist(key)
        if values:
            out[key] = values if len(values) > 1 else values[0]
    return out


def ok(body: dict, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


async def json_body(request: Request, limit: int = 1024 * 1024) -> Any:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise TooLarge(f"JSON body is larger than {limit} bytes")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is not accepted: JSON nested too deeply") from None


def wait_for(request: Request) -> bool | str | None:
    """``?wait-for=indexed``: answer a write only once this node's searches show it;
    ``all``: once every live node's do (nodes sharing a catalog, docs/scale-out.md);
    ``durable``: once saved (the default of `serve`). Absent: the server's default."""
    value = request.query_params.get("wait-for")
    if value is None:
        return None
    if value not in ("indexed", "durable", "all"):
        raise BadRequest("wait-for must be indexed, all or durable")
    return "all" if value == "all" else value == "indexed"


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


async def stream_body(request: Request, write: Callable[[bytes], None], max_bytes: int,
                      abort: Callable[[], None]) -> None:
    """Stream the request body into ``write`` (both faces' uploads use this). A declared
    Content-Length over ``max_bytes`` is refused before reading; a body that passes it
    while streaming stops there. Either way ``abort`` drops what was staged, and the
    rest of the body is drained (bounded) so the client can read the 413."""
    declared = request.headers.get("content-length")
    try:
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(f"body of {int(declared):,} bytes exceeds the tier limit of "
                           f"{max_bytes:,} bytes; nothing was kept", limit=max_bytes)
        async for chunk in request.stream():
            if chunk:
                write(chunk)      # a local append: cheap enough for the event loop
    except (TooLarge, StorageFull):
        # Refused mid-body: drain (bounded) so the client reads the answer instead of
        # a connection reset.
        abort()
        await _drain(request)
        raise
    except BaseException:
        abort()
        raise


async def _drain(request: Request) -> None:
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_AFTER_LIMIT:
                return
    except Exception:  # noqa: BLE001 - the client went away: nothing to answer
        return


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


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Life of an object store's presigned GET behind ``redirect=presigned``.
PRESIGNED_TTL_SECONDS = 300


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """One byte range, or None to send everything (RFC 9110: ignore what we don't do)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first = int(m.group(1)) if m.group(1) else None
    last = int(m.group(2)) if m.group(2) else None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def content_response(request: Request, service: ResourceService, workspace: str,
                     uri: str) -> Response:
    res = service.get(workspace, uri)
    if request.query_params.get("redirect") == "presigned":
        # Large downloads need not flow through us: the object store serves them.
        # Backends without presigned URLs (local disk) just answer with the bytes.
        backend = service.backends.get(res.connection)
        if backend is not None and backend.can_presign and res.size > 0:
            url = backend.presigned_get(res.path, PRESIGNED_TTL_SECONDS, res.filename,
                                        res.content_type)
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    etag = f'"{res.sha256}"'
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or any(t.strip().strip('"').removeprefix('W/"') == res.sha256
                                         for t in inm.split(","))):
        return Response(status_code=304, headers={"ETag": etag})
    rng = parse_range(request.headers.get("range"))
    if rng is not None and request.headers.get("if-range") not in (None, etag):
        rng = None
    res, start, end, chunks = service.read(workspace, uri, rng)
    media_type = mediatype.safe_or_default(res.content_type)
    inline = mediatype.is_pdf(media_type) or mediatype.is_inert(media_type)
    headers = {"ETag": etag, "Accept-Ranges": "bytes",
               "Content-Length": str(end - start + 1),
               "Content-Disposition": f"{'inline' if inline else 'attachment'}; "
                                      f"filename*=UTF-8''{_quote(res.filename)}",
               "X-Content-Type-Options": "nosniff"}
    if not mediatype.is_pdf(media_type):
        # Stored bytes are untrusted: nothing but a PDF (whose viewer needs scripts and
        # never runs the file's own as this origin) is rendered unsandboxed, and types
        # outside a short inert list (HTML, SVG, XML, unknown) are downloads, not pages.
        headers["Content-Security-Policy"] = "sandbox"
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{res.size}"
    return StreamingResponse(chunks, status_code=status, media_type=media_type,
                             headers=headers)


def _quote(name: str) -> str:
    from urllib.parse import quote
    return quote(name, safe="")


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
                                   body["root"], body.get("connection") or "platform")
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

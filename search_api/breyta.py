"""The Breyta CLI wire protocol (`breyta resources ...`), served beside /v1 under /api/.

Same core, a second face: every handler parses the CLI's request, calls the
ResourceService and renders the reply in the CLI's shapes (camelCase items, top-level
list pages, ``{"ok": false, "error": {"code", "message"}}`` failures). No business logic
lives here.

* Auth: ``Authorization: Bearer <key>`` (our API keys); the workspace comes from the
  ``X-Breyta-Workspace`` header (the key's own workspace when the header is absent). A
  key of another workspace gets exactly the 404 of a missing resource.
* Errors: the ``breyta`` decorator turns every ResourceError into the CLI's error body
  with the error's HTTP status; app.py's global handlers (the /v1 envelope) are untouched.
* Lists up to 1,000 items page through the core (at most 100 per call) with its cursor.
* Uploads: init reserves the uri (a session row), PUT streams the bytes into a staged
  blob (tier limit, 413), complete persists them as a retained ``file`` resource at
  ``workspaces/<ws>/persist/_upload/<folder>/<filename>``.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from indexer.query import parse_limit
from storage.clock import rfc3339
from storage.errors import translate_unexpected
from storage.errors import BadRequest, InvalidSpec, NotFound, ResourceError
from storage.records import Resource

from .auth import READ, WRITE, Principal
from .observe import note_principal, route_template
from ._http import content_response, filter_params, json_body, stream_body, svc, wait_for
from .service import Page

#: Lists answer at most this many items (the core pages at 100; we walk its cursor).
MAX_LIST_LIMIT = 1000
DEFAULT_LIMIT = 10
#: Deepest offset a list or search may ask for (walking further is a cursor's job).
MAX_OFFSET = 10_000
SEARCH_MODES = ("lexical", "hybrid", "semantic")
#: The fields of a list/search item, in the CLI's spelling.
ITEM_FIELDS = ("uri", "type", "displayName", "filename", "contentType", "sizeBytes", "score",
               "snippet", "tags", "sourceLabel", "flowSlug", "workflowId", "stepId",
               "storageBackend", "storageRoot", "pathUnderRoot", "tier", "createdAt",
               "updatedAt", "webUrl")
#: Record keys whose CLI name is not simply their camelCase.
RENAMED = {"size": "sizeBytes", "flow": "flowSlug", "step": "stepId"}
OVERRIDE_ALIASES = {"sourceLabel": "source-label", "includeRawContent": "include-raw-content",
                    "include-raw-content?": "include-raw-content",
                    "includeRawContent?": "include-raw-content"}


# -- errors ------------------------------------------------------------------------------
def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": code, "message": message}},
                        status_code=status, headers=headers)


def breyta(handler: Callable[[Request], Awaitable[Response]]
           ) -> Callable[[Request], Awaitable[Response]]:
    """Render failures of a /api handler as the CLI's error body, with the right status."""
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ResourceError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return error_response(exc.status, exc.code, exc.message, headers)
        except ClientDisconnect:
            return error_response(400, "bad_request", "the client went away mid-request")
        except Exception as exc:  # noqa: BLE001 - logged like app.py's internal_error
            typed = translate_unexpected(exc)
            if typed is not None:
                return error_response(typed.status, typed.code, typed.message)
            # The route template, never the raw path (upload ids live in it).
            logging.getLogger("resources.http").error(
                "internal error on %s %s: %r", request.method, route_template(request.scope),
                exc)
            return error_response(500, "internal", "internal error")
    return wrapped


# -- request helpers -------------------------------------------------------------------------
async def who(request: Request, scope: str) -> tuple[Principal, str]:
    """(principal, workspace): the key first (401), then its workspace (404), then scope."""
    p = await run_in_threadpool(svc(request).keys.authenticate,
                                request.headers.get("authorization"))
    ws = request.headers.get("x-breyta-workspace") or p.workspace
    note_principal(request, p.key_id, ws)       # for the request log line
    p.require(ws, scope)
    return p, ws


def _uri(request: Request) -> str:
    uri = request.query_params.get("uri")
    if not uri:
        raise BadRequest("query parameter uri is required")
    return uri


def _offset(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        offset = int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"offset must be an integer, not {value!r}") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidSpec(f"offset must be between 0 and {MAX_OFFSET} (page further with "
                          f"nextCursor)")
    return offset


def base_url(request: Request) -> str:
    return svc(request).settings.public_url


# -- shapes ------------------------------------------------------------------------------------
def camel(key: str) -> str:
    if key in RENAMED:
        return RENAMED[key]
    head, *rest = key.rstrip("?").split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    if isinstance(value, dict):
        return {camel(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def record(res: Resource, base: str) -> dict[str, Any]:
    """The whole record in the CLI's spelling (webUrl included)."""
    return camelize(res.to_json(base))


def item(res: Resource, base: str, page: Page | None = None) -> dict[str, Any]:
    full = record(res, base)
    full["score"] = page.scores.get(res.id) if page is not None else None
    full["snippet"] = page.snippets.get(res.id) if page is not None else None
    return {k: full.get(k) for k in ITEM_FIELDS}


def collect(fetch: Callable[[int, str | None, int | None], Page], limit: int, offset: int,
            cursor: str | None, ranked: bool, base: str) -> dict[str, Any]:
    """A page of up to ``limit`` (<= 1,000) items from core pages of at most 100.

    ``fetch(n, cursor, offset)`` is one core call. Ranked searches start at ``offset``
    directly; newest-first lists (keyset cursors) walk past ``offset`` items first.
    """
    items: list[dict[str, Any]] = []
    total, relation = 0, "eq"
    resumed = cursor is not None
    start = offset if ranked and not cursor else None
    skip = 0 if ranked or cursor else offset
    exhausted = False
    while skip > 0:
        page = fetch(min(100, skip), cursor, None)
        total, relation, cursor = page.total, page.total_relation, page.next_cursor
        skip -= len(page.items)
        if not page.items or cursor is None:
            exhausted = True
            break
    remaining = limit if not exhausted else 0
    while remaining > 0:
        page = fetch(min(100, remaining), cursor, start)
        start = None
        total, relation, cursor = page.total, page.total_relation, page.next_cursor
        items.extend(item(r, base, page if ranked else None) for r in page.items)
        remaining -= len(page.items)
        if not page.items or cursor is None:
            break
    # A "gte" total is only a lower bound: the core's cursor alone says what follows.
    if exhausted or (not resumed and relation == "eq" and offset + len(items) >= total):
        cursor = None          # nothing after this page
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "nextCursor": cursor, "totalRelation": relation}


# -- read routes -------------------------------------------------------------------------------
@breyta
async def list_resources(request: Request) -> Response:
    _, ws = await who(request, READ)
    qp = request.query_params
    service = svc(request)
    params = filter_params(request)
    if qp.get("prefix"):
        params["uri-prefix"] = qp["prefix"]
    limit = parse_limit(qp.get("limit"), DEFAULT_LIMIT, MAX_LIST_LIMIT)
    offset = _offset(qp.get("offset"))
    query = (qp.get("query") or "").strip()
    ranked = query not in ("", "*")

    def fetch(n: int, cursor: str | None, off: int | None) -> Page:
        if ranked:
            return service.search(ws, query, params, n, cursor, "all", off)
        return service.list(ws, params, n, cursor)

    body = await run_in_threadpool(collect, fetch, limit, offset, qp.get("cursor"), ranked,
                                   base_url(request))
    return JSONResponse(body)


@breyta
async def search(request: Request) -> Response:
    _, ws = await who(request, READ)
    qp = request.query_params
    service = svc(request)
    mode = qp.get("mode") or "lexical"
    if mode not in SEARCH_MODES:
        raise InvalidSpec(f"mode must be one of {', '.join(SEARCH_MODES)}")
    keyword_mode = qp.get("keyword-mode") or "balanced"
    limit = parse_limit(qp.get("limit"), DEFAULT_LIMIT)
    offset = _offset(qp.get("offset"))
    q = qp.get("q") or ""
    ranked = q.strip() not in ("", "*")
    params = filter_params(request)

    def fetch(n: int, cursor: str | None, off: int | None) -> Page:
        return service.search(ws, q, params, n, cursor, keyword_mode, off)

    body = await run_in_threadpool(collect, fetch, limit, offset, qp.get("cursor"), ranked,
                                   base_url(request))
    body["mode"] = "lexical"
    body["keywordMode"] = keyword_mode
    if mode != "lexical":
        body["requestedMode"] = mode
        body["modeNote"] = f"{mode} search is not available yet: answered with lexical search"
    return JSONResponse(body)


@breyta
async def by_uri(request: Request) -> Response:
    _, ws = await who(request, READ)
    res = await run_in_threadpool(svc(request).get, ws, _uri(request))
    return JSONResponse(record(res, base_url(request)))


@breyta
async def content(request: Request) -> Response:
    # view, limit and offset shape the CLI's display; the bytes (a result: its JSON value)
    # are the same for all of them.
    _, ws = await who(request, READ)
    return await run_in_threadpool(content_response, request, svc(request), ws, _uri(request))


@breyta
async def signed_url(request: Request) -> Response:
    _, ws = await who(request, READ)
    path, expires = await run_in_threadpool(svc(request).signed_url, ws, _uri(request),
                                            request.query_params.get("ttl"))
    return JSONResponse({"url": f"{base_url(request)}{path}", "expiresAt": rfc3339(expires)})


WORKFLOW_PREFIX = "/api/resources/workflow/"


def workflow_target(request: Request) -> tuple[str, str | None]:
    """(workflow id, step id or None) from the raw path. The CLI encodes each segment
    twice (``a/b`` arrives as ``a%252Fb``): decode twice, so a slash survives."""
    raw = request.scope.get("raw_path")
    path = bytes(raw).split(b"?", 1)[0].decode("utf-8", "replace") if raw else ""
    at = path.find(WORKFLOW_PREFIX)
    if at >= 0:
        segments = [unquote(unquote(s)) for s in path[at + len(WORKFLOW_PREFIX):].split("/")]
    else:   # no raw path (some test clients): the router decoded once already
        segments = [unquote(s) for s in request.path_params["rest"].split("/")]
    if len(segments) == 1 and segments[0]:
        return segments[0], None
    if len(segments) == 3 and segments[0] and segments[1] == "step" and segments[2]:
        return segments[0], segments[2]
    raise NotFound("resource not found")


@breyta
async def workflow(request: Request) -> Response:
    _, ws = await who(request, READ)
    wf, step = workflow_target(request)
    qp = request.query_params
    service = svc(request)
    limit = parse_limit(qp.get("limit"), DEFAULT_LIMIT, MAX_LIST_LIMIT)
    offset = _offset(qp.get("offset"))

    def fetch(n: int, cursor: str | None, off: int | None) -> Page:
        return service.workflow_resources(ws, wf, step, n, cursor)

    body = await run_in_threadpool(collect, fetch, limit, offset, qp.get("cursor"), False,
                                   base_url(request))
    return JSONResponse(body)


# -- search-index ------------------------------------------------------------------------------
SEARCH_INDEX_OPS = ("show", "update", "clear", "reindex")


def parse_search_index(value: Any) -> dict[str, Any]:
    """``searchIndex``: an object, or a string holding one (the CLI passes its
    --search-index text unparsed). Keys in the CLI's or the contract's spelling."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"searchIndex is a string but not JSON ({exc}); send an object "
                             f"such as {{\"text\": \"...\", \"tags\": [\"a\"]}}") from None
    if not isinstance(value, dict):
        raise BadRequest("searchIndex must be an object {text, sourceLabel, tags, "
                         "includeRawContent} or a string holding one as JSON")
    return {OVERRIDE_ALIASES.get(k, k): v for k, v in value.items()}


@breyta
async def search_index(request: Request) -> Response:
    p, ws = await who(request, READ)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('body must be {"op": "show"|"update"|"clear"|"reindex", "uri": ...}')
    op = body.get("op") or "show"
    if op not in SEARCH_INDEX_OPS:
        raise BadRequest(f"op must be one of {', '.join(SEARCH_INDEX_OPS)}")
    uri = body.get("uri")
    if not isinstance(uri, str) or not uri:
        raise BadRequest("uri is required")
    if op != "show":
        p.require(ws, WRITE)
    service = svc(request)
    # This face promises "searchable at once" for search-index changes: it waits unless
    # the caller asks for wait-for=durable.
    wait = wait_for(request)
    wait = True if wait is None else wait
    if op == "update":
        raw = body.get("searchIndex", body.get("search-index"))
        if raw is None:
            raise BadRequest("searchIndex is required for update")
        await run_in_threadpool(service.update_overrides, ws, uri, parse_search_index(raw),
                                False, wait)
    elif op == "clear":
        await run_in_threadpool(service.clear_overrides, ws, uri, wait)
    elif op == "reindex":
        await run_in_threadpool(service.reindex_resource, ws, uri, wait)
    res, text, tags = await run_in_threadpool(service.search_document, ws, uri)
    base = base_url(request)
    out: dict[str, Any] = {
        "op": op, "uri": res.uri, "searchIndex": camelize(res.search_index.to_json()),
        "contentIndexed": res.content_indexed, "sourceLabel": res.source_label,
        "indexedTags": tags, "updatedAt": rfc3339(res.updated_at),
        "webUrl": f"{base}{res.web_path()}"}
    if _flag(body.get("full"), "full"):
        out["resource"] = record(res, base)
        out["indexedText"] = text
    return JSONResponse(out)


# -- delete and upload ---------------------------------------------------------------------------
@breyta
async def delete_file(request: Request) -> Response:
    _, ws = await who(request, WRITE)
    res = await run_in_threadpool(svc(request).delete, ws, _uri(request), wait_for(request))
    return JSONResponse({"uri": res.uri, "deleted": True})


def _flag(value: Any, name: str) -> bool:
    if value in (None, False, "false", "False", 0):
        return False
    if value in (True, "true", "True", 1):
        return True
    raise BadRequest(f"{name} must be true or false")


@breyta
async def upload_init(request: Request) -> Response:
    _, ws = await who(request, WRITE)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('body must be {"filename": ..., "content-type": ..., "folder": ..., '
                         '"replace-existing": false}')
    replace = _flag(body.get("replace-existing", body.get("replaceExisting")),
                    "replace-existing")
    session = await run_in_threadpool(
        svc(request).upload_init, ws, body.get("filename"),
        body.get("content-type", body.get("contentType")), body.get("folder"), replace)
    upload_url = f"{base_url(request)}/api/files/uploads/direct?uri={quote(session['uri'], safe='')}"
    return JSONResponse({"uri": session["uri"], "upload-session-id": session["upload-session-id"],
                         "upload-url": upload_url})


@breyta
async def upload_direct(request: Request) -> Response:
    _, ws = await who(request, WRITE)
    service = svc(request)
    session_id = request.query_params.get("upload-session-id") or None
    session, writer = await run_in_threadpool(service.upload_stage, ws, _uri(request),
                                              session_id)
    await stream_body(request, writer.write, writer.max_bytes, writer.abort)
    try:
        size = await run_in_threadpool(service.upload_staged, session, writer)
    except BaseException:
        writer.abort()
        raise
    return JSONResponse({"uri": session["uri"], "upload-session-id": session["id"],
                         "size-bytes": size})


@breyta
async def upload_complete(request: Request) -> Response:
    _, ws = await who(request, WRITE)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('body must be {"uri": ..., "upload-session-id": ...}')
    uri, session_id = body.get("uri"), body.get("upload-session-id")
    if not isinstance(uri, str) or not uri or not isinstance(session_id, str) or not session_id:
        raise BadRequest("uri and upload-session-id are required")
    res = await run_in_threadpool(svc(request).upload_complete, ws, uri, session_id,
                                  wait_for(request))
    return JSONResponse({"uri": res.uri, "content-type": res.content_type,
                         "size-bytes": res.size})


# -- anything else under /api/ ------------------------------------------------------------------
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@breyta
async def fallback(request: Request) -> Response:
    allowed: set[str] = set()
    for route in breyta_routes[:-1]:
        match, _ = route.matches(request.scope)
        if match == Match.PARTIAL and route.methods:
            allowed |= route.methods
    if allowed:
        return error_response(405, "method_not_allowed",
                              f"{request.method} is not allowed here "
                              f"(use {', '.join(sorted(allowed))})",
                              {"Allow": ", ".join(sorted(allowed))})
    raise NotFound("resource not found")


breyta_routes = [
    Route("/api/resources", list_resources, methods=["GET"]),
    Route("/api/resources/search", search, methods=["GET"]),
    Route("/api/resources/by-uri", by_uri, methods=["GET"]),
    Route("/api/resources/content", content, methods=["GET"]),
    Route("/api/resources/url", signed_url, methods=["GET"]),
    Route("/api/resources/workflow/{rest:path}", workflow, methods=["GET"]),
    Route("/api/resources/search-index", search_index, methods=["POST"]),
    Route("/api/files/by-uri", delete_file, methods=["DELETE"]),
    Route("/api/files/uploads/init", upload_init, methods=["POST"]),
    Route("/api/files/uploads/direct", upload_direct, methods=["PUT"]),
    Route("/api/files/uploads/complete", upload_complete, methods=["POST"]),
    Route("/api/{rest:path}", fallback, methods=ALL_METHODS),   # must stay last
]

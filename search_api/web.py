"""The operator web view and the resource picker: server-rendered pages under /ui/.

Sign-in, the search page, a resource's page (content, search-index overrides, signed
URL), a workflow run's page, and the in-app picker. Sessions, CSRF and rendering are in
web_base.py. Another workspace's pages and resources answer 404, exactly like missing
ones.

No business logic here: handlers call ResourceService and render templates (Jinja2,
autoescape on). Only search snippets are rendered unescaped: Tantivy already escapes
them and adds nothing but ``<b>`` highlights.
"""
from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from storage.clock import rfc3339
from storage import mediatype
from storage.errors import BadRequest, Forbidden, Unauthorized

from ._http import content_response
from .auth import ADMIN, READ, WRITE
from .views import web_facets
from .web_base import (CONTENT_CSP, COOKIE, SESSION_MAX_AGE, Session, _link_maker, _read_cookie,
                       _Redirect, _secure_headers, _set_cookie, _signed_in, page, read_form,
                       render, require_session, safe_return, svc)
from .web_lists import SORT_KEYS, SYNTAX_HELP, parse_sort, sort_items

PAGE_SIZE = 20
PICKER_PAGE_SIZE = 24
#: The filters the search page offers: every one of the API's, same kebab-case names.
SEARCH_FILTERS = ("type", "tier", "exclude-tier", "slot", "storage-root", "path-prefix",
                  "accept", "tag", "workflow-id", "flow", "step")


# -- sign-in --------------------------------------------------------------------------------------
@page
async def home(request: Request) -> Response:
    session = await _signed_in(request)
    if session is None:
        raise _Redirect("/ui/login")
    raise _Redirect(f"/ui/{session.workspace}/search")


@page
async def login(request: Request) -> Response:
    nxt = safe_return(request.query_params.get("next"))
    if request.method == "GET":
        signed = await _signed_in(request)
        if signed is not None:
            raise _Redirect(nxt if nxt and nxt.startswith("/ui/") else
                            f"/ui/{signed.workspace}/search")
        session = _read_cookie(request) or Session(secrets.token_urlsafe(32))
        return render(request, "login.html", {"next": nxt or ""}, session=session)
    session = _read_cookie(request)
    if session is None:
        raise Forbidden("missing or invalid CSRF token: reload the page and try again")
    form = await read_form(request, session)
    nxt = safe_return(form.get("next")) or nxt
    key = (form.get("key") or "").strip()
    try:
        principal = await run_in_threadpool(svc(request).keys.authenticate, f"Bearer {key}")
    except Unauthorized:
        return render(request, "login.html", {"next": nxt or "",
                                              "error": "That API key is not valid."},
                      401, session)
    if READ not in principal.scopes and ADMIN not in principal.scopes:
        return render(request, "login.html", {"next": nxt or "", "error":
                      "That key lacks the resources.read scope."}, 403, session)
    fresh = Session(secrets.token_urlsafe(32), principal.key_id, principal.workspace)
    target = nxt if nxt and nxt.startswith(f"/ui/{principal.workspace}/") \
        else f"/ui/{principal.workspace}/search"
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, fresh)
    return _secure_headers(response)


@page
async def logout(request: Request) -> Response:
    session = _read_cookie(request)
    if session is None:
        raise _Redirect("/ui/login")
    await read_form(request, session)
    # Deleting the cookie is only advice to this browser; recording the end makes a
    # copied cookie useless too.
    service = svc(request)
    await run_in_threadpool(service.keys.end_session, session.csrf,
                            service.now() + SESSION_MAX_AGE)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return _secure_headers(response)


@page
async def workspace_home(request: Request) -> Response:
    ws = request.path_params["ws"]
    await require_session(request, ws)
    raise _Redirect(f"/ui/{ws}/search")


# -- search -----------------------------------------------------------------------------------------
@page
async def search_page(request: Request) -> Response:
    ws = request.path_params["ws"]
    session = await require_session(request, ws)
    service = svc(request)
    qp = request.query_params
    q = (qp.get("q") or "").strip()
    params = {k: qp.get(k) for k in SEARCH_FILTERS if qp.get(k)}
    cursor = qp.get("cursor") or None
    result, facets, error, status = None, None, None, 200
    try:
        # One search answers the page, the total and every facet count (one aggregation
        # in the same call) instead of a counting search per facet value.
        result = await run_in_threadpool(service.search, ws, q,
                                         {**params, "facets": "all", "facet-size": 100},
                                         qp.get("limit") or PAGE_SIZE, cursor)
        facets = web_facets(result, list(service.settings.tiers))
    except BadRequest as exc:
        error, status = exc.message, 400
    slots = await run_in_threadpool(service.list_slots, ws)
    roots = await run_in_threadpool(service.storage_roots, ws)
    # Usage beside limits, only where an operator set one (counting costs a query).
    quotas = await run_in_threadpool(service.quotas.report, ws) \
        if service.quotas.limits(ws) else None
    view = "table" if qp.get("view") == "table" else "cards"
    sort, desc = parse_sort(qp.get("sort")) if view == "table" else (None, False)
    items = sort_items(result.items, sort, desc) if result is not None else []
    return render(request, "search.html", {
        "q": q, "params": params, "result": result, "items": items, "facets": facets,
        "error": error, "syntax_help": SYNTAX_HELP if error and q else None,
        "view": view, "sort": sort, "desc": desc, "sort_keys": list(SORT_KEYS),
        "quotas": quotas,
        "slots": slots, "roots": roots, "tiers": list(service.settings.tiers),
        "link": _link_maker(request, f"/ui/{ws}/search",
                            ("q", *SEARCH_FILTERS, "limit", "view", "sort")),
        "title": f"Search · {ws}"}, status, session)


# -- resource ---------------------------------------------------------------------------------------
async def _resource_page(request: Request, session: Session, ws: str, id_: str,
                         status: int = 200, **extra: Any) -> Response:
    service = svc(request)
    preview = await run_in_threadpool(service.preview, ws, id_)
    res = preview["resource"]
    record = res.to_json(service.settings.public_url)
    assert session.principal is not None
    can_write = WRITE in session.principal.scopes or ADMIN in session.principal.scopes
    return render(request, "resource.html", {
        "res": res, "record": record, "preview": preview,
        "record_json": json.dumps(record, indent=2, ensure_ascii=False),
        "overrides": res.search_index, "can_write": can_write,
        "saved": request.query_params.get("saved"), "title": res.display_name, **extra},
        status, session)


@page
async def resource_page(request: Request) -> Response:
    ws, id_ = request.path_params["ws"], request.path_params["id"]
    session = await require_session(request, ws)
    return await _resource_page(request, session, ws, id_)


@page
async def resource_content(request: Request) -> Response:
    ws, id_ = request.path_params["ws"], request.path_params["id"]
    await require_session(request, ws)
    service = svc(request)
    res = await run_in_threadpool(service.get_by_id, ws, id_)
    response = await run_in_threadpool(content_response, request, service, ws, res.uri)
    if request.query_params.get("download"):
        response.headers["Content-Disposition"] = \
            f"attachment; filename*=UTF-8''{quote(res.filename, safe='')}"
    else:
        # An operator looking at a resource sees it in place, under CONTENT_CSP's
        # sandbox (no script, no same-origin): the API's download-only rule for
        # active types exists for links handed around, which this page is not.
        response.headers["Content-Disposition"] = \
            f"inline; filename*=UTF-8''{quote(res.filename, safe='')}"
    response.headers["Cache-Control"] = "private, no-cache"
    if mediatype.is_pdf(mediatype.safe_or_default(res.content_type)):
        # The browser's PDF viewer does not run in a sandboxed document; a PDF's own
        # scripts never run as this origin anyway.
        return _secure_headers(response, "frame-ancestors 'self'")
    return _secure_headers(response, CONTENT_CSP)


def _overrides_from_form(form: dict[str, str]) -> dict[str, Any]:
    raw_tags = form.get("tags") or ""
    tags = [t.strip() for t in raw_tags.replace("\n", ",").split(",") if t.strip()]
    include = {"true": True, "false": False}.get(form.get("include-raw-content") or "")
    text = form.get("text") or ""
    label = (form.get("source-label") or "").strip()
    return {"text": text if text.strip() else None, "tags": tags,
            "source-label": label or None, "include-raw-content": include}


@page
async def resource_overrides(request: Request) -> Response:
    ws, id_ = request.path_params["ws"], request.path_params["id"]
    session = await require_session(request, ws)
    form = await read_form(request, session)
    assert session.principal is not None
    session.principal.require(ws, WRITE)
    service = svc(request)
    res = await run_in_threadpool(service.get_by_id, ws, id_)
    try:
        if form.get("op") == "clear":
            # The operator goes on to search for it: wait until the index shows it.
            await run_in_threadpool(service.clear_overrides, ws, res.uri, True)
        else:
            await run_in_threadpool(service.update_overrides, ws, res.uri,
                                    _overrides_from_form(form), True, True)
    except BadRequest as exc:
        return await _resource_page(request, session, ws, id_, 400, override_error=exc.message)
    raise _Redirect(f"/ui/{ws}/resources/{id_}?saved=1#search-index")


@page
async def resource_signed_url(request: Request) -> Response:
    ws, id_ = request.path_params["ws"], request.path_params["id"]
    session = await require_session(request, ws)
    form = await read_form(request, session)
    service = svc(request)
    res = await run_in_threadpool(service.get_by_id, ws, id_)
    path, expires = await run_in_threadpool(service.signed_url, ws, res.uri, form.get("ttl"))
    link = {"url": f"{service.settings.public_url}{path}", "expires-at": rfc3339(expires)}
    if "application/json" in request.headers.get("accept", ""):
        return _secure_headers(JSONResponse({"data": link, "meta": {}}))
    return await _resource_page(request, session, ws, id_, signed=link)


# -- workflow runs ----------------------------------------------------------------------------------
@page
async def workflow_page(request: Request) -> Response:
    ws, wf = request.path_params["ws"], request.path_params["workflow_id"]
    session = await require_session(request, ws)
    items, total = await run_in_threadpool(svc(request).workflow_run, ws, wf)
    steps: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for res in sorted(items, key=lambda r: (r.step or "", r.created_at, r.id)):
        group = steps.setdefault(res.step or "_", {"items": [], "bytes": 0, "tiers": {}})
        group["items"].append(res)
        group["bytes"] += res.size
        group["tiers"][res.tier] = group["tiers"].get(res.tier, 0) + 1
    tiers: dict[str, dict[str, int]] = {}
    for res in items:
        t = tiers.setdefault(res.tier, {"count": 0, "bytes": 0})
        t["count"] += 1
        t["bytes"] += res.size
    # Timeline: the run's first and last persist, each step's span as a share of it.
    first = min((r.created_at for r in items), default=0.0)
    last = max((r.created_at for r in items), default=0.0)
    span = max(last - first, 1e-9)
    for group in steps.values():
        times = [r.created_at for r in group["items"]]
        group["first"], group["last"] = min(times), max(times)
        group["left"] = round(100 * (group["first"] - first) / span, 2) if last > first else 0
        group["width"] = max(round(100 * (group["last"] - group["first"]) / span, 2), 1.5) \
            if last > first else 100
    assert session.principal is not None
    can_write = WRITE in session.principal.scopes or ADMIN in session.principal.scopes
    return render(request, "workflow.html", {
        "workflow_id": wf, "steps": steps, "total": total, "shown": len(items),
        "bytes": sum(r.size for r in items), "tiers": tiers, "first": first, "last": last,
        "can_write": can_write, "deleted": request.query_params.get("deleted"),
        "title": f"Run {wf}"}, 200, session)


# -- picker -------------------------------------------------------------------------------------------
@page
async def picker_page(request: Request) -> Response:
    ws = request.path_params["ws"]
    session = await require_session(request, ws)
    qp = request.query_params
    raw_return = qp.get("return")
    ret = safe_return(raw_return)
    if raw_return and ret is None:
        raise BadRequest("return must be a relative path on this site, such as /app/form")
    q = (qp.get("q") or "").strip()
    params = {k: qp.get(k) for k in ("slot", "accept") if qp.get(k)}
    result, error, status = None, None, 200
    try:
        result = await run_in_threadpool(svc(request).search, ws, q, params, PICKER_PAGE_SIZE,
                                         qp.get("cursor") or None)
    except BadRequest as exc:
        error, status = exc.message, 400
    return render(request, "picker.html", {
        "q": q, "slot": params.get("slot", ""), "accept": params.get("accept", ""),
        "return_to": ret or "", "result": result, "error": error,
        "link": _link_maker(request, f"/ui/{ws}/picker", ("q", "slot", "accept", "return")),
        "title": "Choose a resource"}, status, session)


@page
async def picker_choose(request: Request) -> Response:
    ws = request.path_params["ws"]
    session = await require_session(request, ws)
    form = await read_form(request, session)
    res = await run_in_threadpool(svc(request).get, ws, form.get("uri") or "")
    raw_return = form.get("return")
    ret = safe_return(raw_return)
    if raw_return and ret is None:
        raise BadRequest("return must be a relative path on this site, such as /app/form")
    if ret:
        sep = "&" if "?" in ret else "?"
        raise _Redirect(f"{ret}{sep}{urlencode({'uri': res.uri})}")
    return render(request, "picked.html", {"res": res, "title": "Chosen"}, 200, session)


web_routes = [
    Route("/ui", home, methods=["GET"]),
    Route("/ui/", home, methods=["GET"]),
    Route("/ui/login", login, methods=["GET", "POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
    Route("/ui/{ws}", workspace_home, methods=["GET"]),
    Route("/ui/{ws}/search", search_page, methods=["GET"]),
    Route("/ui/{ws}/resources/{id}", resource_page, methods=["GET"]),
    Route("/ui/{ws}/resources/{id}/content", resource_content, methods=["GET"]),
    Route("/ui/{ws}/resources/{id}/search-index", resource_overrides, methods=["POST"]),
    Route("/ui/{ws}/resources/{id}/signed-url", resource_signed_url, methods=["POST"]),
    Route("/ui/{ws}/workflows/{workflow_id:path}", workflow_page, methods=["GET"]),
    Route("/ui/{ws}/picker", picker_page, methods=["GET"]),
    Route("/ui/{ws}/picker/choose", picker_choose, methods=["POST"]),
]

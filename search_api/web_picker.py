"""The embeddable picker page: ``/ui/picker?token=...`` inside another origin's iframe.

No cookie and no sign-in: the token (minted by the embedding app's backend, see
search_api/picker.py) is the credential, carried in the page's own links and forms.
The page may be framed only by the session's origin (``frame-ancestors``; no
``X-Frame-Options``, whose SAMEORIGIN would refuse every other origin) and posts its
events (``resource-picked``, ``cancelled``, ``resized``) to that origin only. It has no
app navigation: the embedding app owns the frame's surroundings.
"""
from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage.errors import BadRequest, ResourceError

from .picker import PickerSession
from .service import ResourceService

PICKER_PAGE_SIZE = 24


def svc(request: Request) -> ResourceService:
    return request.app.state.service


def picker_csp(origin: str | None) -> str:
    """The page CSP, framed by exactly one origin (or none, for an error page)."""
    ancestors = origin or "'none'"
    return ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}")


def _headers(response: Response, origin: str | None) -> Response:
    response.headers["Content-Security-Policy"] = picker_csp(origin)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The token is in the URL: never send it on as a referrer, not even to ourselves.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _render(request: Request, name: str, context: dict[str, Any], status: int,
            origin: str | None) -> Response:
    from .web_base import templates
    response = templates.TemplateResponse(request, name, context, status_code=status)
    return _headers(response, origin)


def picker_page_handler(handler: Callable[[Request], Awaitable[Response]]
                        ) -> Callable[[Request], Awaitable[Response]]:
    """Errors become a bare error page that no one may frame (the origin is unknown)."""
    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except ResourceError as exc:
            return _render(request, "picker_error.html", {
                "status": exc.status, "message": exc.message,
                "title": "Picker unavailable"}, exc.status, None)
    return wrapper


async def _session(request: Request) -> PickerSession:
    return await run_in_threadpool(svc(request).picker_session,
                                   request.query_params.get("token"))


@picker_page_handler
async def embedded_picker(request: Request) -> Response:
    session = await _session(request)
    qp = request.query_params
    q = (qp.get("q") or "").strip()
    token = qp.get("token") or ""
    result, error, status = None, None, 200
    try:
        result = await run_in_threadpool(svc(request).search, session.workspace, q,
                                         session.params, PICKER_PAGE_SIZE,
                                         qp.get("cursor") or None)
    except BadRequest as exc:
        error, status = exc.message, 400

    def link(**changes: str) -> str:
        params = {"token": token, **({"q": q} if q else {}), **changes}
        return "/ui/picker?" + urlencode(params)

    return _render(request, "embed_picker.html", {
        "session": session, "token": token, "q": q, "result": result, "error": error,
        "link": link, "title": "Choose a resource"}, status, session.origin)


@picker_page_handler
async def picker_thumb(request: Request) -> Response:
    from .web_thumbs import thumb_response, thumb_size
    session = await _session(request)
    size = thumb_size(request)
    service = svc(request)
    res = await run_in_threadpool(service.picker_resource, session, request.path_params["id"])
    return thumb_response(await run_in_threadpool(service.thumbnail, res, size))


async def picker_upload(request: Request) -> Response:
    """Raw body (``fetch`` of the chosen File), ``?filename=``; JSON in, JSON out."""
    from starlette.responses import JSONResponse

    from ._http import stream_body
    service = svc(request)
    session = await _session(request)
    spec = await run_in_threadpool(service.picker_upload_spec, session,
                                   request.query_params.get("filename"),
                                   request.headers.get("content-type"))
    job = await run_in_threadpool(service.begin_persist, session.workspace, spec)
    await stream_body(request, job.write, job.writer.max_bytes, job.abort)
    try:
        result = await run_in_threadpool(job.commit)
    except BaseException:
        job.abort()
        raise
    res = await run_in_threadpool(service.picker_check_upload, session, result.resource)
    response = JSONResponse({"data": {"uri": res.uri, "id": res.id, "name": res.display_name,
                                      "content-type": res.content_type, "size": res.size},
                             "meta": {}}, status_code=201)
    return _headers(response, session.origin)


#: Registered before the web view's ``/ui/{ws}`` routes, which would take "picker" as a
#: workspace name.
picker_web_routes = [
    Route("/ui/picker", embedded_picker, methods=["GET"]),
    Route("/ui/picker/thumbs/{id}", picker_thumb, methods=["GET"]),
    Route("/ui/picker/upload", picker_upload, methods=["POST"]),
]

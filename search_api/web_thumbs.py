"""Thumbnail responses of the web view and the picker (made by indexer/thumbs.py).

A missing thumbnail is a 404 the page's script turns into the type label; the header
``X-Thumbnail`` says hit / made / none / busy, so operators (and tests) can see that a
file is rendered once and a refused one is never retried.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from indexer.thumbs import SIZES, Thumb
from storage.errors import BadRequest

from .web_base import page, require_session, svc


def thumb_size(request: Request) -> str:
    size = request.query_params.get("size") or "small"
    if size not in SIZES:
        raise BadRequest(f"size must be one of {', '.join(SIZES)}")
    return size


def thumb_response(thumb: Thumb) -> Response:
    if thumb.path is None:
        status = 503 if thumb.state == "busy" else 404
        response: Response = PlainTextResponse(f"no thumbnail: {thumb.error}", status)
        response.headers["Cache-Control"] = "no-store" if status == 503 else "private, max-age=300"
    else:
        response = FileResponse(thumb.path, media_type="image/webp")
        # Content-addressed: the bytes behind this URL change only with the resource.
        response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Thumbnail"] = thumb.state
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@page
async def resource_thumb(request: Request) -> Response:
    ws, id_ = request.path_params["ws"], request.path_params["id"]
    await require_session(request, ws)
    size = thumb_size(request)
    service = svc(request)
    res = await run_in_threadpool(service.get_by_id, ws, id_)
    return thumb_response(await run_in_threadpool(service.thumbnail, res, size))


thumb_routes = [
    Route("/ui/{ws}/resources/{id}/thumb", resource_thumb, methods=["GET"]),
]

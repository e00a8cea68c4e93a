"""What every HTTP face shares (/v1, /api, /ui, kv, picker, quotas): the service of
the app, key checks, JSON bodies, streamed uploads, content responses with ranges and
safe headers. Private to search_api; faces import from here, never from each other."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from indexer.filterspec import FILTER_NAMES, OPTION_NAMES
from storage import mediatype
from storage.errors import BadRequest, StorageFull, TooLarge

from .auth import Principal
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


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse (compact, UTF-8) rendered by orjson: the standard
    library's encoder was ~15% of a search request's time (20 records a page)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(body: dict, status: int = 200) -> JSONResponse:
    return FastJSONResponse(body, status_code=status)


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

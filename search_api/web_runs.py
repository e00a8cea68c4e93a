"""Workflow run page extras: a zip of the run streamed as it is read, and deleting the
run's ephemeral outputs (write scope, CSRF token, an explicit confirmation)."""
from __future__ import annotations

import zipfile
from typing import Iterator
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from storage.errors import BadRequest
from storage.records import Resource

from .auth import WRITE
from .service import ResourceService
from .web_base import _Redirect, _secure_headers, page, read_form, require_session, svc


class _Sink:
    """A write-only, unseekable file: zipfile then writes data descriptors, so each
    member streams without knowing its size first; ``drain()`` hands the bytes on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _member_names(items: list[Resource]) -> list[str]:
    """step/filename, made unique with the id when two outputs share a name."""
    names: list[str] = []
    seen: set[str] = set()
    for res in items:
        name = f"{res.step or '_'}/{res.filename}"
        if name in seen:
            name = f"{res.step or '_'}/{res.id}-{res.filename}"
        seen.add(name)
        names.append(name)
    return names


def zip_stream(service: ResourceService, ws: str, items: list[Resource]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for res, name in zip(items, _member_names(items)):
            info = zipfile.ZipInfo(name, date_time=_date_time(res.created_at))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as dest:
                if res.size:
                    for chunk in service.read(ws, res.uri)[3]:
                        dest.write(chunk)
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()


def _date_time(ts: float) -> tuple[int, int, int, int, int, int]:
    import time
    t = time.gmtime(max(ts, 315532800))          # zip dates start in 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


@page
async def run_zip(request: Request) -> Response:
    ws, wf = request.path_params["ws"], request.path_params["workflow_id"]
    await require_session(request, ws)
    service = svc(request)
    items, _ = await run_in_threadpool(service.workflow_run, ws, wf)
    response = StreamingResponse(zip_stream(service, ws, items), media_type="application/zip")
    response.headers["Content-Disposition"] = \
        f"attachment; filename*=UTF-8''{quote(f'run-{wf}.zip', safe='')}"
    return _secure_headers(response)


@page
async def run_delete_ephemeral(request: Request) -> Response:
    ws, wf = request.path_params["ws"], request.path_params["workflow_id"]
    session = await require_session(request, ws)
    form = await read_form(request, session)
    assert session.principal is not None
    session.principal.require(ws, WRITE)
    if form.get("confirm") != wf:
        raise BadRequest("type the run id to confirm deleting its ephemeral outputs")
    removed = await run_in_threadpool(svc(request).delete_workflow, ws, wf, "ephemeral")
    raise _Redirect(f"/ui/{ws}/workflows/{quote(wf, safe='')}?deleted={len(removed)}")


#: Paths of their own: the run page's ``workflows/{workflow_id:path}`` takes any suffix
#: as part of the run id.
run_routes = [
    Route("/ui/{ws}/run-zip/{workflow_id:path}", run_zip, methods=["GET"]),
    Route("/ui/{ws}/run-delete-ephemeral/{workflow_id:path}", run_delete_ephemeral,
          methods=["POST"]),
]

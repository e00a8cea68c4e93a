"""``GET /v1/{ws}/cluster`` (workspace.admin): the nodes sharing this catalog, each with
its index's change-log position, how far behind the head it is and since when, and
whether it is live (heard from within the last 10 s). See docs/scale-out.md."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import envelope
from .auth import ADMIN
from ._http import ok, principal, svc


async def cluster(request: Request) -> Response:
    await principal(request, ADMIN)
    data = await run_in_threadpool(svc(request).cluster.status)
    return ok(envelope.plain(data, total=len(data["nodes"])))


cluster_routes = [Route("/v1/{ws}/cluster", cluster, methods=["GET"])]

"""Operator routes for quotas: ``GET /admin/quotas`` (every workspace's limits) and
``GET|PUT /admin/quotas/{ws}`` (one workspace: limits beside usage), service.admin key.

A tenant sees its own limits and usage in ``GET /v1/{ws}/usage`` (``quotas``) but can
never change them: a workspace.admin key is not an operator key.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage.errors import BadRequest

from . import envelope
from .health import service_admin
from ._http import json_body, ok, svc


async def list_quotas(request: Request) -> Response:
    await service_admin(request)
    limits = svc(request).quotas.all_limits()
    return ok(envelope.plain({ws: {t: lim.to_json() for t, lim in tiers.items()}
                              for ws, tiers in limits.items()}))


async def workspace_quota(request: Request) -> Response:
    await service_admin(request)
    ws = request.path_params["ws"]
    quotas = svc(request).quotas
    if request.method == "PUT":
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("tier"), str) or \
                set(body) - {"tier", "max-bytes", "max-resources"}:
            raise BadRequest('body must be {"tier": "retained", "max-bytes": N|null, '
                             '"max-resources": N|null}')
        await run_in_threadpool(quotas.set, ws, body["tier"], body.get("max-bytes"),
                                body.get("max-resources"))
    return ok(envelope.plain(await run_in_threadpool(quotas.report, ws), workspace=ws))


quota_routes = [
    Route("/admin/quotas", list_quotas, methods=["GET"]),
    Route("/admin/quotas/{ws}", workspace_quota, methods=["GET", "PUT"]),
]

"""`resources quota show|set`: an operator's limits per workspace and tier.

Runs on the machine that holds the data home (the limits file and the catalog); a
running server sees a change at its next persist. Over HTTP the same is
``PUT /admin/quotas/{ws}`` with a service.admin key.

``register`` receives the CLI's group and decorators instead of importing cli.py, so
``python -m search_api.cli`` (cli as ``__main__``) has no import cycle.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from storage.errors import BadRequest


def _service(api: Any) -> Any:
    if "service" not in dir(type(api)):
        raise BadRequest("quota works on the local data home: unset RESOURCES_API_URL, or "
                         "use PUT /admin/quotas/{ws} with a service.admin key")
    return api.service


def register(main: click.Group, format_option: Callable, run: Callable) -> None:
    @main.group()
    def quota() -> None:
        """Per-workspace limits (bytes, resources) per tier, enforced at persist (507)."""

    @quota.command(name="show")
    @click.argument("workspace")
    @format_option
    @run
    def quota_show(api: Any, workspace: str) -> dict:
        """Limits beside current usage, per tier."""
        return {"data": _service(api).quotas.report(workspace),
                "meta": {"workspace": workspace}}

    @quota.command(name="set")
    @click.argument("workspace")
    @click.option("--tier", type=click.Choice(["retained", "ephemeral"]), required=True,
                  help="The tier the limits apply to.")
    @click.option("--max-bytes", type=int, default=None, help="Byte limit (omit: none).")
    @click.option("--max-resources", type=int, default=None,
                  help="Resource limit (omit: none).")
    @format_option
    @run
    def quota_set(api: Any, workspace: str, tier: str, max_bytes: int | None,
                  max_resources: int | None) -> dict:
        """Set WORKSPACE's limits for one tier (neither option: remove them)."""
        quotas = _service(api).quotas
        quotas.set(workspace, tier, max_bytes, max_resources)
        return {"data": quotas.report(workspace), "meta": {"workspace": workspace}}

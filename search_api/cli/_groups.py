"""Command groups: workflow runs, search-index overrides, slots, the KV store, keys."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from storage.config import DEFAULT_CONNECTION
from storage.errors import BadRequest, NotFound

from ..output import fit_middle, width
from ._context import check_uri, format_option, run, wait_option
from ._options import complete_slot, paging_options, tier_choice


# -- workflow ---------------------------------------------------------------------------
@click.group()
def workflow() -> None:
    """What a workflow run produced, step by step; a run's cleanup."""


@workflow.command(name="list")
@click.argument("workflow_id")
@paging_options
@format_option
@run
def workflow_list(api, workflow_id: str, limit, cursor) -> dict:
    """Resources of one workflow run (see the STEP column)."""
    return api.workflow(workflow_id, None, limit, cursor)


@workflow.command(name="step")
@click.argument("workflow_id")
@click.argument("step_id")
@paging_options
@format_option
@run
def workflow_step(api, workflow_id: str, step_id: str, limit, cursor) -> dict:
    """Resources of one step of a workflow run."""
    return api.workflow(workflow_id, step_id, limit, cursor)


@workflow.command(name="delete")
@click.argument("workflow_id")
@click.option("--tier", type=tier_choice, default=None, help="Only this tier.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (a terminal is asked to confirm).")
@format_option
@run
@wait_option
def workflow_delete(api, workflow_id: str, tier: str | None, dry_run: bool, yes: bool,
                    fmt: str) -> dict | None:
    """A run's cleanup: delete every resource it produced (asks first on a terminal)."""
    if dry_run:
        return _say_workflow(api.workflow_delete(workflow_id, tier, dry_run=True), fmt)
    if not yes and sys.stdin.isatty():
        preview = api.workflow_delete(workflow_id, tier, dry_run=True)
        count = preview["meta"]["count"]
        if count == 0:
            return _say_workflow(api.workflow_delete(workflow_id, tier), fmt)
        click.confirm(f"delete {count} resource(s) of run {workflow_id}"
                      f"{' (' + tier + ' only)' if tier else ''}?", abort=True, err=True)
    return _say_workflow(api.workflow_delete(workflow_id, tier), fmt)


def _say_workflow(env: dict, fmt: str) -> dict | None:
    if fmt == "json":
        return env
    data = env["data"]
    uris = data.get("would-delete", data.get("deleted", []))
    verb = "would delete" if "would-delete" in data else "deleted"
    click.echo(f"{verb} {len(uris)} resource(s)")
    for uri in uris:
        click.echo("  " + fit_middle(uri, width() - 2))
    return None


# -- search-index -----------------------------------------------------------------------
@click.group(name="search-index")
def search_index() -> None:
    """Show or change one resource's search-index overrides."""


@search_index.command(name="show")
@click.argument("uri")
@format_option
@run
def si_show(api, uri: str) -> dict:
    """Show the record with its overrides."""
    check_uri(api, uri)
    return api.search_index("show", uri, None)


@search_index.command(name="update")
@click.argument("uri")
@click.option("--text", help="Replaces the content text in the index.")
@click.option("--tag", "tags", multiple=True, help="Tag added to the indexed tags (repeatable).")
@click.option("--source-label", help="Replaces the source label.")
@click.option("--include-raw-content/--no-raw-content", default=None,
              help="Whether extracted text is indexed too.")
@format_option
@run
@wait_option
def si_update(api, uri: str, text, tags, source_label, include_raw_content) -> dict:
    """Update overrides; the index follows at once."""
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = text
    if tags:
        changes["tags"] = list(tags)
    if source_label is not None:
        changes["source-label"] = source_label
    if include_raw_content is not None:
        changes["include-raw-content"] = include_raw_content
    if not changes:
        raise click.UsageError("nothing to update: give --text, --tag, --source-label or --[no-]raw-content")
    check_uri(api, uri)
    return api.search_index("update", uri, changes)


@search_index.command(name="clear")
@click.argument("uri")
@format_option
@run
@wait_option
def si_clear(api, uri: str) -> dict:
    """Remove every override."""
    check_uri(api, uri)
    return api.search_index("clear", uri, None)


# -- slots ------------------------------------------------------------------------------
@click.group()
def slots() -> None:
    """Installer-owned slots: a name bound to a connection and a root."""


@slots.command(name="bind")
@click.argument("slot", shell_complete=complete_slot)
@click.option("--root", required=True, help="Storage root, e.g. reports/acme.")
@click.option("--connection", default=DEFAULT_CONNECTION, show_default=True,
              help="The storage connection the root lives on.")
@format_option
@run
def slots_bind(api, slot: str, root: str, connection: str) -> dict:
    """Bind SLOT to a root (and connection)."""
    return api.slots_bind(slot, root, connection)


@slots.command(name="list")
@format_option
@run
def slots_list(api) -> dict:
    """The workspace's slots."""
    return api.slots_list()


# -- kv ---------------------------------------------------------------------------------
@click.group()
def kv() -> None:
    """The KV pointer store: small JSON values (often {"ref": "res://..."}) with TTL."""


class KvKeyNotFound(NotFound):
    code = "kv_key_not_found"


def _kv_missing(api, key: str, exc: NotFound) -> None:
    """The store answers a missing key like a missing resource; say which it was."""
    if type(exc) is NotFound:
        raise KvKeyNotFound(f"no kv key {key!r} in workspace {api.workspace!r} "
                            f"(see `resources kv list`)") from exc
    raise exc


@kv.command(name="set")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", type=click.IntRange(min=1), default=None, help="Expire after N seconds.")
@click.option("--if-version", type=click.IntRange(min=0), default=None,
              help="Compare-and-set: current version (0: only if absent).")
@format_option
@run
def kv_set(api, key: str, value: str, ttl: int | None, if_version: int | None) -> dict:
    """Set KEY to the JSON VALUE (- reads it from stdin: values up to 256 KiB do not fit
    in one command-line argument, which Linux caps at 128 KiB)."""
    if value == "-":
        value = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"VALUE is not JSON: {exc} (a string needs quotes: '\"text\"')") from None
    return api.kv_set(key, parsed, ttl, if_version)


@kv.command(name="get")
@click.argument("key")
@click.option("--resolve", is_flag=True, help="Also return the records of res:// refs in the value.")
@format_option
@run
def kv_get(api, key: str, resolve: bool) -> dict:
    """Get KEY's value (and version, times)."""
    try:
        return api.kv_get(key, resolve)
    except NotFound as exc:
        _kv_missing(api, key, exc)
        raise


@kv.command(name="delete")
@click.argument("key")
@format_option
@run
def kv_delete(api, key: str) -> dict:
    """Delete KEY."""
    try:
        return api.kv_delete(key)
    except NotFound as exc:
        _kv_missing(api, key, exc)
        raise


@kv.command(name="list")
@click.option("--prefix", default="", help="Only keys starting with this.")
@paging_options
@format_option
@run
def kv_list(api, prefix: str, limit, cursor) -> dict:
    """Keys, newest first (long values are cut in table output)."""
    return api.kv_list(prefix, limit, cursor)


# -- keys -------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """API keys (stored hashed; the key is printed once)."""


@keys.command(name="create")
@click.option("--workspace", required=True, help="The key's workspace.")
@click.option("--scope", "scopes", required=True, multiple=True,
              help="resources.read, resources.write, workspace.admin (comma list or repeated).")
@click.option("--name", default=None, help="A label for the key.")
@format_option
@run
def keys_create(api, workspace: str, scopes: tuple[str, ...], name: str | None) -> dict:
    """Create a key for WORKSPACE with scopes; prints it once (runs on the data home)."""
    service = api.service
    flat = [s for item in scopes for s in item.split(",")]
    key_id, key = service.keys.create(workspace, flat, name, service.now())
    return {"data": {"id": key_id, "key": key, "workspace": workspace,
                     "scopes": sorted(set(s.strip() for s in flat if s.strip()))},
            "meta": {"note": "store this key now: only its hash is kept"}}


@keys.command(name="list")
@click.option("--workspace", default=None, help="Only this workspace's keys.")
@format_option
@run
def keys_list(api, workspace: str | None) -> dict:
    """Keys (never their secrets): id, workspace, name, scopes, created-at."""
    items = api.service.keys.list(workspace)
    return {"data": {"items": items}, "meta": {"total": len(items)}}


@keys.command(name="revoke")
@click.argument("key_id")
@format_option
@run
def keys_revoke(api, key_id: str) -> dict:
    """Revoke KEY_ID: its requests fail with 401 and its web sessions end."""
    return {"data": api.service.keys.revoke(key_id), "meta": {}}


@click.group()
def picker() -> None:
    """The embeddable picker: which origins may frame it (see docs/picker.md)."""


@picker.group(name="origins")
def picker_origins() -> None:
    """Origins (scheme://host[:port]) allowed to embed this workspace's picker."""


@picker_origins.command(name="show")
@format_option
@run
def picker_origins_show(api) -> dict:
    """The allowed origins."""
    return api.picker_origins(None)


@picker_origins.command(name="set")
@click.argument("origins", nargs=-1)
@format_option
@run
def picker_origins_set(api, origins: tuple[str, ...]) -> dict:
    """Replace the allowed origins with ORIGINS (none: nobody may embed)."""
    return api.picker_origins(list(origins))


@picker_origins.command(name="add")
@click.argument("origins", nargs=-1, required=True)
@format_option
@run
def picker_origins_add(api, origins: tuple[str, ...]) -> dict:
    """Allow ORIGINS too."""
    current = api.picker_origins(None)["data"]["origins"]
    return api.picker_origins([*current, *origins])


@picker_origins.command(name="remove")
@click.argument("origins", nargs=-1, required=True)
@format_option
@run
def picker_origins_remove(api, origins: tuple[str, ...]) -> dict:
    """Stop allowing ORIGINS (their open picker sessions end at once)."""
    from ..picker import normalize_origin
    drop = {normalize_origin(o) for o in origins}
    current = api.picker_origins(None)["data"]["origins"]
    return api.picker_origins([o for o in current if o not in drop])


GROUPS = (workflow, search_index, slots, kv, keys, picker)

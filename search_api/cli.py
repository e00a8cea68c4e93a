"""The `resources` CLI: a thin layer over the API objects (embedded or remote).

Commands parse flags into the same parameters the HTTP API takes, call one method and
print the envelope. Core errors become one line on stderr and exit 1; usage errors
exit 2 (click's own convention).
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from storage.errors import BadRequest, ResourceError

from .api import make_api
from .output import default_format, emit, emit_error

FILTER_OPTIONS = [
    ("--type", "type"), ("--types", "types"), ("--content-sources", "content-sources"),
    ("--tier", "tier"), ("--exclude-tier", "exclude-tier"),
    ("--storage-backend", "storage-backend"), ("--storage-root", "storage-root"),
    ("--path-prefix", "path-prefix"), ("--slot", "slot"), ("--accept", "accept"),
    ("--workflow-id", "workflow-id"), ("--flow", "flow"), ("--step", "step"),
]


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]),
                        default=None, help="Output format (table on a terminal, else json).")(f)


def run(fn: Callable[..., dict | None]) -> Callable:
    """Call the command, print its envelope, map core errors to exit 1 once."""
    @functools.wraps(fn)
    def wrapper(*args: Any, fmt: str | None = None, **kwargs: Any) -> None:
        fmt = fmt or default_format()
        api = make_api()
        try:
            env = fn(api, *args, **kwargs)
            if env is not None:
                emit(env, fmt)
        except ResourceError as exc:
            emit_error(exc, fmt)
            sys.exit(exc.exit_code)
        finally:
            api.close()
    return wrapper


def filter_options(f: Callable) -> Callable:
    for flag, key in reversed(FILTER_OPTIONS):
        f = click.option(flag, key.replace("-", "_"), default=None,
                         help=f"Filter: {key} (see CONTRACT).")(f)
    f = click.option("--tag", "tag", multiple=True, help="Filter: has this tag (repeatable).")(f)
    f = click.option("--limit", default=None, help="Page size (default 20, max 100).")(f)
    f = click.option("--cursor", default=None, help="meta.next-cursor of the previous page.")(f)
    return f


def collect_filters(kwargs: dict) -> dict:
    params = {key: kwargs.pop(key.replace("-", "_")) for _, key in FILTER_OPTIONS}
    params["tag"] = list(kwargs.pop("tag") or [])
    return {k: v for k, v in params.items() if v not in (None, [], "")}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="resources")
def main() -> None:
    """Persist, find and read workflow resources (res:// refs).

    Embedded on $RESOURCES_HOME (default ./.resources) and workspace
    $RESOURCES_WORKSPACE (default `default`); with $RESOURCES_API_URL and
    $RESOURCES_API_KEY set, every command goes through the HTTP API instead.
    """


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--type", "type_", type=click.Choice(["blob", "kv"]), default="blob",
              help="blob makes a file resource, kv a result (body must be JSON).")
@click.option("--tier", type=click.Choice(["retained", "ephemeral"]), default="retained")
@click.option("--slot", help="Installer-owned slot to write under.")
@click.option("--path", help="Relative folder (template), e.g. exports/{{input.year}}.")
@click.option("--filename", help="Leaf name (template); defaults to FILE's name.")
@click.option("--content-type", help="Declared MIME type (a hint; bytes decide indexing).")
@click.option("--display-name", help="Display name (defaults to the filename).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Template variable, e.g. input.year=2026 (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--source-label", help="Replaces the derived source label.")
@click.option("--index-text", help="Search-index text that replaces the content text.")
@click.option("--no-raw-content", is_flag=True, help="Do not index the extracted text.")
@click.option("--include-raw-content", is_flag=True, help="Index extracted text (ephemeral too).")
@click.option("--flow", help="Flow slug.")
@click.option("--step", help="Step id.")
@click.option("--workflow-id", help="Workflow run id.")
@click.option("--ttl-seconds", type=int, help="Expire after N seconds (within the tier).")
@click.option("--idempotency-key", help="Retry-safe key: a replay returns the first record.")
@format_option
@run
def persist(api, file: str, type_: str, tier: str, slot, path, filename, content_type,
            display_name, params, tags, source_label, index_text, no_raw_content,
            include_raw_content, flow, step, workflow_id, ttl_seconds, idempotency_key) -> dict:
    """Persist FILE (or - for stdin) and print its record."""
    spec: dict[str, Any] = {"type": type_, "tier": tier}
    nested: dict[str, dict] = {}
    for item in params:
        if "=" not in item:
            raise click.UsageError(f"--param needs KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        group, _, name = key.partition(".")
        if group not in ("input", "data", "query") or not name:
            raise click.UsageError(f"--param key must be input.x, data.x or query.x, got {key!r}")
        nested.setdefault(group, {})[name] = value
    if nested:
        spec["params"] = nested
    if filename is None and file != "-":
        filename = os.path.basename(file)
    for key, value in (("slot", slot), ("path", path), ("filename", filename),
                       ("content-type", content_type), ("display-name", display_name),
                       ("flow", flow), ("step", step), ("workflow-id", workflow_id),
                       ("ttl-seconds", ttl_seconds)):
        if value is not None:
            spec[key] = value
    if tags:
        spec["tags"] = list(tags)
    si: dict[str, Any] = {}
    if index_text is not None:
        si["text"] = index_text
    if source_label is not None:
        si["source-label"] = source_label
    if no_raw_content and include_raw_content:
        raise click.UsageError("--no-raw-content and --include-raw-content exclude each other")
    if no_raw_content:
        si["include-raw-content"] = False
    if include_raw_content:
        si["include-raw-content"] = True
    if si:
        spec["search-index"] = si
    if file == "-":
        return api.persist(sys.stdin.buffer, spec, idempotency_key)
    try:
        fh = open(file, "rb")
    except OSError as exc:
        raise BadRequest(f"cannot read {file}: {exc.strerror}") from None
    with fh:
        return api.persist(fh, spec, idempotency_key)


@main.command()
@click.argument("uri")
@format_option
@run
def get(api, uri: str) -> dict:
    """Show one resource's record."""
    return api.get(uri)


@main.command()
@click.argument("uri")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None, hidden=True)
def read(uri: str, output: str | None, fmt: str | None) -> None:
    """Write the resource's bytes to stdout or -o FILE."""
    api = make_api()
    fmt = fmt or default_format()
    tmp = f"{output}.part" if output else None
    try:
        chunks = api.read(uri)
        if output:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, output)
        else:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
            out.flush()
    except ResourceError as exc:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        emit_error(exc, fmt)
        sys.exit(exc.exit_code)
    finally:
        api.close()


@main.command()
@click.argument("uri")
@click.option("--ttl", type=int, default=None, help="Seconds the link is valid (60..86400, default 3600).")
@format_option
@run
def url(api, uri: str, ttl: int | None) -> dict:
    """A signed link to the content that needs no key."""
    return api.url(uri, ttl)


@main.command(name="list")
@filter_options
@format_option
@run
def list_(api, limit, cursor, **kwargs) -> dict:
    """List resources, newest first, with the same filters as search."""
    return api.list(collect_filters(kwargs), limit, cursor)


@main.command()
@click.argument("query", required=False, default="")
@filter_options
@format_option
@run
def search(api, query: str, limit, cursor, **kwargs) -> dict:
    """Search: words, "phrases", AND/OR/-, field:value; plus storage filters."""
    return api.search(query, collect_filters(kwargs), limit, cursor)


@main.command()
@click.argument("uri")
@format_option
@run
def delete(api, uri: str) -> dict:
    """Delete blob, record and index entry together."""
    return api.delete(uri)


@main.group()
def workflow() -> None:
    """What a workflow run produced."""


@workflow.command(name="list")
@click.argument("workflow_id")
@click.option("--limit", default=None)
@click.option("--cursor", default=None)
@format_option
@run
def workflow_list(api, workflow_id: str, limit, cursor) -> dict:
    """Resources of one workflow run."""
    return api.workflow(workflow_id, None, limit, cursor)


@workflow.command(name="step")
@click.argument("workflow_id")
@click.argument("step_id")
@click.option("--limit", default=None)
@click.option("--cursor", default=None)
@format_option
@run
def workflow_step(api, workflow_id: str, step_id: str, limit, cursor) -> dict:
    """Resources of one step of a workflow run."""
    return api.workflow(workflow_id, step_id, limit, cursor)


@workflow.command(name="delete")
@click.argument("workflow_id")
@click.option("--tier", type=click.Choice(["retained", "ephemeral"]), default=None,
              help="Only this tier.")
@format_option
@run
def workflow_delete(api, workflow_id: str, tier: str | None) -> dict:
    """A run's cleanup: delete every resource it produced."""
    return api.workflow_delete(workflow_id, tier)


@main.group(name="search-index")
def search_index() -> None:
    """Show or change one resource's search-index overrides."""


@search_index.command(name="show")
@click.argument("uri")
@format_option
@run
def si_show(api, uri: str) -> dict:
    """Show the record with its overrides."""
    return api.search_index("show", uri, None)


@search_index.command(name="update")
@click.argument("uri")
@click.option("--text", help="Replaces the content text in the index.")
@click.option("--tag", "tags", multiple=True, help="Tag added to the indexed tags.")
@click.option("--source-label", help="Replaces the source label.")
@click.option("--include-raw-content/--no-raw-content", default=None,
              help="Whether extracted text is indexed too.")
@format_option
@run
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
    return api.search_index("update", uri, changes)


@search_index.command(name="clear")
@click.argument("uri")
@format_option
@run
def si_clear(api, uri: str) -> dict:
    """Remove every override."""
    return api.search_index("clear", uri, None)


@main.group()
def slots() -> None:
    """Installer-owned slots: a name bound to a connection and a root."""


@slots.command(name="bind")
@click.argument("slot")
@click.option("--root", required=True, help="Storage root, e.g. reports/acme.")
@click.option("--connection", default="platform", show_default=True)
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


@main.group()
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
    from .picker import normalize_origin
    drop = {normalize_origin(o) for o in origins}
    current = api.picker_origins(None)["data"]["origins"]
    return api.picker_origins([o for o in current if o not in drop])


@main.group()
def kv() -> None:
    """The KV pointer store: small JSON values (often {"ref": "res://..."}) with TTL."""


def _int_or_none(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{what} must be a whole number, not {value!r}") from None


@kv.command(name="set")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", default=None, help="Expire after N seconds.")
@click.option("--if-version", default=None, help="Compare-and-set: current version (0: only if absent).")
@format_option
@run
def kv_set(api, key: str, value: str, ttl: str | None, if_version: str | None) -> dict:
    """Set KEY to the JSON VALUE (- reads it from stdin: values up to 256 KiB do not fit
    in one command-line argument, which Linux caps at 128 KiB)."""
    if value == "-":
        value = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"VALUE is not JSON: {exc}") from None
    return api.kv_set(key, parsed, _int_or_none(ttl, "--ttl"), _int_or_none(if_version, "--if-version"))


@kv.command(name="get")
@click.argument("key")
@click.option("--resolve", is_flag=True, help="Also return the records of res:// refs in the value.")
@format_option
@run
def kv_get(api, key: str, resolve: bool) -> dict:
    """Get KEY's value (and version, times)."""
    return api.kv_get(key, resolve)


@kv.command(name="delete")
@click.argument("key")
@format_option
@run
def kv_delete(api, key: str) -> dict:
    """Delete KEY."""
    return api.kv_delete(key)


@kv.command(name="list")
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", default=None)
@click.option("--cursor", default=None)
@format_option
@run
def kv_list(api, prefix: str, limit, cursor) -> dict:
    """Keys, newest first."""
    return api.kv_list(prefix, limit, cursor)


@main.group()
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
    """Create a key for WORKSPACE with scopes; prints it once."""
    service = api.service
    flat = [s for item in scopes for s in item.split(",")]
    key_id, key = service.keys.create(workspace, flat, name, service.now())
    return {"data": {"id": key_id, "key": key, "workspace": workspace,
                     "scopes": sorted(set(s.strip() for s in flat if s.strip()))},
            "meta": {"note": "store this key now: only its hash is kept"}}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, type=int, show_default=True)
@click.option("--max-header-bytes", default=64 * 1024, type=click.IntRange(1024, 1 << 24),
              show_default=True, help="Largest request line + headers; larger is a 431.")
@click.option("--header-timeout", default=10.0, type=click.FloatRange(0.1, 3600),
              show_default=True, help="Seconds a client has to send a request's headers.")
@click.option("--keep-alive-timeout", default=5, type=click.IntRange(1, 3600),
              show_default=True, help="Seconds an idle keep-alive connection stays open.")
@click.option("--limit-concurrency", default=2048, type=click.IntRange(1, 1 << 20),
              show_default=True, help="Connections + tasks at once; more get a 503.")
def serve(host: str, port: int, max_header_bytes: int, header_timeout: float,
          keep_alive_timeout: int, limit_concurrency: int) -> None:
    """Serve the HTTP API (and web view) with uvicorn on the data home."""
    import uvicorn

    from storage.config import Settings

    from .app import create_app
    from .http_limits import protocol
    settings = Settings.from_env()
    if not os.environ.get("RESOURCES_PUBLIC_URL"):
        settings.public_url = f"http://{host}:{port}"
    uvicorn.run(create_app(settings=settings), host=host, port=port, log_level="warning",
                http=protocol(max_header_bytes, header_timeout),
                timeout_keep_alive=keep_alive_timeout, limit_concurrency=limit_concurrency)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be removed (retention preview).")
@format_option
@run
def gc(api, dry_run: bool) -> dict:
    """Delete every resource past its expires-at (blob, record, index entry together)."""
    result = api.service.gc(dry_run=dry_run)
    return {"data": result, "meta": {"count": result["count"]}}


@main.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed; say what could not.")
@click.option("--quick", is_flag=True, help="Skip hashing blob bytes (sizes are still checked).")
@format_option
def doctor(repair: bool, quick: bool, fmt: str | None) -> None:
    """Compare catalog, blobs and index; report problems by kind; exit 1 while any remain."""
    from . import doctor as doctor_mod
    fmt = fmt or default_format()
    api = make_api()
    if hasattr(api, "recover"):
        # Embedded: diagnose before recovery, so what a crash left (pending operations,
        # staged leftovers) is reported by kind rather than silently fixed at startup.
        api.recover = False
    try:
        report = doctor_mod.run(api.service, do_repair=repair, verify_bytes=not quick)
    except ResourceError as exc:
        emit_error(exc, fmt)
        sys.exit(exc.exit_code)
    finally:
        api.close()
    if fmt == "json":
        emit({"data": report, "meta": {"ok": report["ok"]}}, fmt)
    else:
        _print_doctor(report)
    sys.exit(0 if report["ok"] else 1)


def _print_doctor(report: dict) -> None:
    for item in report.get("repaired", []):
        click.echo(f"repaired  {item['kind']:<18} {item['subject']}: {item['action']}")
    for item in report.get("not-repaired", []):
        click.echo(f"NOT fixed {item['kind']:<18} {item['subject']}: {item['reason']}")
    for p in report["problems"]:
        click.echo(f"problem   {p['kind']:<18} {p['subject']} {p['detail']}")
    click.echo("counts: " + ", ".join(f"{k}={v}" for k, v in report["counts"].items()))
    usage = report["usage"]
    click.echo(f"usage: {usage['count']} resources, {usage['bytes']:,} bytes; "
               f"extraction failures: {usage['extraction-failures']}")
    for g in usage["groups"]:
        click.echo(f"  {g['workspace']:<16} {g['tier']:<10} {g['storage-root'] or '-':<24} "
                   f"{g['count']:>8} {g['bytes']:>14,}")
    dangling = report.get("dangling-kv-refs")
    if dangling:
        click.echo(f"dangling kv refs: {dangling['count']}")
        for d in dangling["items"]:
            click.echo(f"  {d['key']} -> {d['uri']} ({d['reason']})")
    click.echo("ok" if report["ok"] else "problems remain")


@main.command()
@format_option
@run
def reindex(api) -> dict:
    """Rebuild the search index from the catalog and swap it in atomically."""
    from tqdm import tqdm
    bar = tqdm(total=0, unit="res", disable=not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    count = api.service.reindex(progress)
    bar.close()
    return {"data": {"reindexed": count}, "meta": {}}


@main.command()
@click.option("--once-for", type=float, default=None, hidden=True,
              help="Stop after N seconds (tests).")
@format_option
@run
def watch(api, once_for: float | None) -> dict:
    """Register files other programs write into bound slot folders (until Ctrl-C).

    A file created or changed under a slot's root becomes a resource of that slot (or a
    new version); a deleted file loses its record. Ignores tmp/ and *.part.
    """
    import signal
    import threading

    from indexer.watch import SlotWatcher
    if "service" not in dir(type(api)):
        raise BadRequest("watch works on the local data home: unset RESOURCES_API_URL "
                         "and run it on the machine that holds $RESOURCES_HOME")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher = SlotWatcher(api.service)
    try:
        watcher.run(stop, once_for=once_for)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return {"data": watcher.stats.to_json(), "meta": {}}


if __name__ == "__main__":
    main()

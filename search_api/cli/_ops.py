"""Operating the data home: serve, gc, doctor, reindex, watch; and shell completion."""
from __future__ import annotations

import os
import sqlite3
import sys

import click

from storage.errors import BadRequest, ResourceError

from ..output import default_format, emit, fit_middle, human_size, width
from ._context import config, damaged, fail, format_option, make_api, run



@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; mind the keys).")
@click.option("--port", default=8080, type=click.IntRange(1, 65535), show_default=True,
              help="Port to listen on (refused up front when taken).")
@click.option("--max-header-bytes", default=64 * 1024, type=click.IntRange(1024, 1 << 24),
              show_default=True, help="Largest request line + headers; larger is a 431.")
@click.option("--header-timeout", default=10.0, type=click.FloatRange(0.1, 3600),
              show_default=True, help="Seconds a client has to send a request's headers.")
@click.option("--keep-alive-timeout", default=5, type=click.IntRange(1, 3600),
              show_default=True, help="Seconds an idle keep-alive connection stays open.")
@click.option("--limit-concurrency", default=2048, type=click.IntRange(1, 1 << 20),
              show_default=True, help="Connections + tasks at once; more get a 503.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Default info ($RESOURCES_LOG_LEVEL).")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None,
              help="Default: text on a terminal, else json ($RESOURCES_LOG_FORMAT).")
@click.option("--metrics-port", type=int, default=None,
              help="Also serve /metrics without a key on 127.0.0.1:PORT.")
@click.option("--workers", type=int, default=None,
              help="Request processes on the port (default $RESOURCES_WORKERS, else the "
                   "number of cores). One of them writes the index at a time.")
@click.option("--indexer/--no-indexer", default=True, show_default=True,
              help="Follow the change log here; --no-indexer when `resources indexer` "
                   "runs elsewhere on this data home.")
@click.option("--catalog", metavar="URL", default=None,
              help="A postgresql:// catalog shared by several nodes (default "
                   "$RESOURCES_CATALOG_URL, else SQLite in the data home).")
def serve(host: str, port: int, max_header_bytes: int, header_timeout: float,
          keep_alive_timeout: int, limit_concurrency: int, log_level: str | None,
          log_format: str | None, metrics_port: int | None, workers: int | None,
          indexer: bool, catalog: str | None) -> None:
    """Serve the HTTP API (and web view) with uvicorn on the data home.

    Logs one JSON line per request and per background job on stderr; /metrics (a
    service.admin key, or --metrics-port), /healthz, /readyz: docs/operations.md."""
    import uvicorn

    from ..demo import next_free_port, port_free
    if not port_free(host, port):
        alt = next_free_port(host, port)
        raise click.UsageError(f"port {port} on {host} is already in use; try --port "
                               f"{alt or '<a free port>'}")

    from storage.config import Settings

    from .. import logs
    from ..app import create_app
    from ..http_limits import protocol
    from ..opsconfig import OpsSettings
    from ..service import ResourceService
    ops = OpsSettings.from_env()
    ops.log_level = log_level or ops.log_level
    ops.log_format = log_format or ops.log_format
    ops.metrics_port = metrics_port if metrics_port is not None else ops.metrics_port
    logs.configure(ops.log_level, ops.log_format)
    workers = workers or int(os.environ.get("RESOURCES_WORKERS") or 0) or os.cpu_count() or 1
    if workers < 1:
        raise click.UsageError("--workers must be at least 1")
    # Worker processes build their app from the environment: everything goes there.
    os.environ["RESOURCES_HOME"] = str(config().home)
    if not os.environ.get("RESOURCES_PUBLIC_URL"):
        os.environ["RESOURCES_PUBLIC_URL"] = f"http://{host}:{port}"
    os.environ["RESOURCES_INDEXER"] = "1" if indexer else "0"
    if catalog:
        if not catalog.startswith(("postgresql://", "postgres://")):
            raise click.UsageError("--catalog must be a postgresql:// URL")
        os.environ["RESOURCES_CATALOG_URL"] = catalog
    for name, value in (("RESOURCES_LOG_LEVEL", ops.log_level),
                        ("RESOURCES_LOG_FORMAT", ops.log_format)):
        if value:                 # unset: each worker decides (text on a terminal)
            os.environ[name] = value
    settings = Settings.from_env(config().home)
    try:
        from ._snapshot import bootstrap       # a new node starts from an index snapshot
        bootstrap(settings)
        service = ResourceService(settings, log=logs.service_logger())
    except ResourceError as exc:          # a damaged catalog: one clear line, no traceback
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    limits = dict(http=protocol(max_header_bytes, header_timeout),
                  timeout_keep_alive=keep_alive_timeout, limit_concurrency=limit_concurrency)
    # log_config=None: uvicorn keeps the handler configured above; access_log off: our
    # request line replaces it (and never prints a raw path).
    if workers == 1:
        uvicorn.run(create_app(service, ops=ops, lead=indexer), host=host, port=port,
                    log_level=ops.log_level, log_config=None, access_log=False, **limits)
    else:
        service.close()       # opened once to recover and to fail early on a bad home
        _serve_workers(workers, ops.metrics_port, host=host, port=port,
                       log_level=ops.log_level, log_config=None, access_log=False, **limits)


def _serve_workers(workers: int, metrics_port: int | None, **options) -> None:
    """`serve --workers N`: Prometheus multiprocess mode set up before uvicorn spawns the
    workers (they inherit the environment); this parent process serves the key-less
    loopback /metrics, if asked, and marks killed workers dead (search_api/multiproc.py)."""
    import uvicorn

    from .. import multiproc
    from ..metrics import serve_loopback
    path = multiproc.prepare(config().home)
    os.environ.pop("RESOURCES_METRICS_PORT", None)     # one listener: this process's
    loopback = serve_loopback(multiproc.scrape_registry(path), metrics_port) \
        if metrics_port else None
    janitor = multiproc.Janitor(path).start()
    try:
        uvicorn.run("search_api.app:app_from_env", factory=True, workers=workers, **options)
    finally:
        janitor.stop()
        if loopback is not None:
            loopback.shutdown()


@click.command()
def indexer() -> None:
    """Run only the index followers on the data home (for a deployment that serves the
    API with `serve --no-indexer`): applies the change log to the search index and, with
    semantic search on, embeds changed resources; one writer of each at a time."""
    import signal
    import threading

    from indexer.follower import IndexFollower
    from storage.config import Settings

    from ..service import ResourceService
    service = ResourceService(Settings.from_env(config().home))
    follower = IndexFollower(service.index, log=service.log,
                             clock=lambda: service.now()).start()
    embedder = service.start_semantic_follower()     # the embedding follower too
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    if embedder is not None:
        embedder.stop()
    follower.stop()
    service.close()


@click.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be removed (retention preview).")
@format_option
@run
def gc(api, dry_run: bool, fmt: str) -> dict | None:
    """Delete every resource past its expires-at (blob, record, index entry together)."""
    result = api.service.gc(dry_run=dry_run)
    if fmt == "json":
        return {"data": result, "meta": {"count": result["count"]}}
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {result['count']} expired resource(s), {human_size(result['bytes'])}"
               f"; {verb} {len(result['kv-removed'])} expired kv key(s)")
    for uri in result["removed"]:
        click.echo("  " + fit_middle(uri, width() - 2))
    return None


@click.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed; say what could not.")
@click.option("--quick", is_flag=True, help="Skip hashing blob bytes (sizes are still checked).")
@format_option
def doctor(repair: bool, quick: bool, fmt: str | None) -> None:
    """Compare catalog, blobs and index; report problems by kind; exit 1 while any remain."""
    from .. import doctor as doctor_mod
    fmt = fmt or default_format()
    try:
        api = make_api()
    except ResourceError as exc:
        fail(exc, fmt)
    if hasattr(api, "recover"):
        # Embedded: diagnose before recovery, so what a crash left (pending operations,
        # staged leftovers) is reported by kind rather than silently fixed at startup.
        api.recover = False
    try:
        report = doctor_mod.run(api.service, do_repair=repair, verify_bytes=not quick)
    except ResourceError as exc:
        fail(exc, fmt)
    except sqlite3.DatabaseError as exc:
        fail(damaged(exc), fmt)
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


@click.command()
@click.option("--semantic", is_flag=True,
              help="Rebuild the embedding vectors of semantic search instead (every "
                   "resource re-embedded by the local model; stop a running serve first).")
@format_option
@run
def reindex(api, semantic: bool) -> dict:
    """Rebuild the search index from the catalog and swap it in atomically."""
    from tqdm import tqdm
    bar = tqdm(total=0, unit="res", disable=not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    if semantic:
        count = api.service.semantic.rebuild(progress)
        bar.close()
        return {"data": {"embedded": count}, "meta": {}}
    count = api.service.reindex(progress)
    bar.close()
    return {"data": {"reindexed": count}, "meta": {}}


@click.command()
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




COMPLETION_HELP = """
\b
Add one line to your shell's start-up file:
  bash:  eval "$(_RESOURCES_COMPLETE=bash_source resources)"     (~/.bashrc)
  zsh:   eval "$(_RESOURCES_COMPLETE=zsh_source resources)"      (~/.zshrc)
  fish:  _RESOURCES_COMPLETE=fish_source resources | source      (~/.config/fish/config.fish)
"""


@click.command(epilog=COMPLETION_HELP)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (commands, options, tiers, types, slots)."""
    from click.shell_completion import get_completion_class

    from . import main
    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "resources", "_RESOURCES_COMPLETE").source())


@click.command(name="sync-slot")
@click.argument("slot")
@format_option
@run
def sync_slot(api, slot: str) -> dict:
    """Adopt objects other programs put under an object-storage slot's root.

    One flat scan of the slot's prefix; each object the catalog does not know becomes a
    resource of the slot (read where it is, never rewritten). `watch` is the local-disk
    counterpart; object storage has no change feed to follow.
    """
    from ..sync import sync_slot as do_sync
    if "service" not in dir(type(api)):
        raise BadRequest("sync-slot works on the local data home: unset RESOURCES_API_URL "
                         "and run it where $RESOURCES_HOME is")
    return {"data": do_sync(api.service, api.workspace, slot), "meta": {}}


COMMANDS = (serve, indexer, gc, doctor, reindex, watch, sync_slot, completion)

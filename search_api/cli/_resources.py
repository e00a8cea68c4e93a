"""Commands on resources: persist, get, read, url, list, search, delete, status."""
from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO, Iterator

import click

from storage.errors import BadRequest, ResourceError

from ..output import default_format, emit, human_size
from ._context import check_uri, config, fail, format_option, make_api, run, wait_option
from ._options import (collect_filters, filter_options, keyword_mode_option, search_mode_option,
                       tier_choice)

#: Bodies at least this big get a progress bar on a terminal.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024

PERSIST_EXAMPLES = """
\b
Examples:
  resources persist report.pdf --tag quarterly
  resources persist report.pdf --slot archive --path 'exports/{{input.year}}' \\
      --param input.year=2026
  echo '{"rows": 7}' | resources persist - --type kv --filename summary.json
"""


@click.command(epilog=PERSIST_EXAMPLES)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--type", "type_", type=click.Choice(["blob", "kv"]), default="blob",
              show_default=True, help="blob makes a file resource, kv a result (body must be JSON).")
@click.option("--tier", type=tier_choice, default="retained", show_default=True,
              help="retained: 50 MiB, kept 365 days; ephemeral: 4 GiB, kept 24 h.")
@click.option("--slot", help="Installer-owned slot to write under (see `slots list`).")
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
@click.option("--ttl-seconds", type=click.IntRange(min=1), help="Expire after N seconds (within the tier).")
@click.option("--idempotency-key", help="Retry-safe key: a replay returns the first record.")
@format_option
@run
@wait_option
def persist(api, file: str, type_: str, tier: str, slot, path, filename, content_type,
            display_name, params, tags, source_label, index_text, no_raw_content,
            include_raw_content, flow, step, workflow_id, ttl_seconds, idempotency_key,
            fmt: str) -> dict:
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
        size = os.fstat(fh.fileno()).st_size
        if _show_progress(size, fmt):
            with click.progressbar(length=size, label="persist", file=sys.stderr) as bar:
                return api.persist(_Counting(fh, bar.update), spec, idempotency_key)
        return api.persist(fh, spec, idempotency_key)


def _show_progress(size: int | None, fmt: str) -> bool:
    """Only for people: a big body, table output and a terminal on stderr."""
    return bool(size and size >= PROGRESS_MIN_BYTES and fmt == "table" and sys.stderr.isatty())


class _Counting:
    """A file whose reads report their size (for the progress bar)."""

    def __init__(self, fh: BinaryIO, step) -> None:
        self.fh, self.step = fh, step

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(n)
        self.step(len(chunk))
        return chunk

    def fileno(self) -> int:
        return self.fh.fileno()

    def tell(self) -> int:
        return self.fh.tell()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk


@click.command()
@click.argument("uri")
@format_option
@run
def get(api, uri: str) -> dict:
    """Show one resource's record."""
    check_uri(api, uri)
    return api.get(uri)


_TEXTUAL = ("text/", "application/json", "application/xml", "application/javascript",
            "application/x-ndjson", "application/yaml", "image/svg+xml")


@click.command()
@click.argument("uri")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@click.option("--force", is_flag=True, help="Write binary content to a terminal anyway.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None, hidden=True)
def read(uri: str, output: str | None, force: bool, fmt: str | None) -> None:
    """Write the resource's bytes to stdout or -o FILE.

    Binary content (a PDF, an image) is not written to a terminal unless --force:
    use -o FILE or a pipe.
    """
    fmt = fmt or default_format()
    tmp = f"{output}.part" if output else None
    try:
        api = make_api()
    except ResourceError as exc:
        fail(exc, fmt)
    try:
        check_uri(api, uri)
        record = None
        to_tty = not output and sys.stdout.isatty()
        if to_tty or (fmt == "table" and sys.stderr.isatty()):
            record = api.get(uri)["data"]
        if to_tty and not force and not str(record.get("content-type", "")).startswith(_TEXTUAL):
            raise BadRequest(f"{record.get('content-type')} content would garble the terminal: "
                             f"use -o FILE, a pipe, or --force")
        chunks = api.read(uri)
        size = record.get("size") if record else None
        if output:
            with open(tmp, "wb") as fh:
                if _show_progress(size, fmt):
                    with click.progressbar(length=size, label="read", file=sys.stderr) as bar:
                        for chunk in chunks:
                            fh.write(chunk)
                            bar.update(len(chunk))
                else:
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
        fail(exc, fmt)
    finally:
        api.close()


@click.command()
@click.argument("uri")
@click.option("--ttl", type=click.IntRange(60, 86400), default=None,
              help="Seconds the link is valid (60..86400, default 3600).")
@format_option
@run
def url(api, uri: str, ttl: int | None) -> dict:
    """A signed link to the content that needs no key."""
    check_uri(api, uri)
    return api.url(uri, ttl)


@click.command(name="list", epilog="""
\b
Examples:
  resources list --slot archive --path-prefix exports/2026
  resources list --type result --step summarize --format json | jq -r '.data.items[].uri'
""")
@filter_options
@format_option
@run
def list_(api, limit, cursor, **kwargs) -> dict:
    """List resources, most recently written first, with the same filters as search."""
    return api.list(collect_filters(kwargs), limit, cursor)


@click.command(epilog="""
\b
Examples:
  resources search invoice -- -draft         (words after -- may start with -)
  resources search zephyr OR globex
  resources search quarterly report --keyword-mode any --slot archive
  resources search 'storage-root:reports/acme' --accept 'image/*'
  resources search transcript --format json | jq -r '.data.items[].uri'
  resources search the unpaid bill --mode hybrid
""")
@click.argument("words", nargs=-1)
@keyword_mode_option
@search_mode_option
@filter_options
@format_option
@run
def search(api, words: tuple[str, ...], keyword_mode: str, mode: str, limit, cursor,
           **kwargs) -> dict:
    """Search for WORDS: several words without quotes, "phrases", AND/OR/-, field:value
    (fields: display-name, filename, path, content, tags, source-label, type, tier,
    storage-root, flow, step, workflow-id, slot, tag, content-type); no words browses."""
    return api.search(" ".join(words), collect_filters(kwargs), limit, cursor, keyword_mode,
                      mode)


@click.command()
@click.argument("uri")
@format_option
@run
@wait_option
def delete(api, uri: str, fmt: str) -> dict | None:
    """Delete blob, record and index entry together; prints what went in one line."""
    check_uri(api, uri)
    env = api.delete(uri)
    if fmt == "json":
        return env
    data = env["data"]
    click.echo(f"deleted {data['uri']} ({data.get('display-name') or data.get('filename')}, "
               f"{human_size(data.get('size'))})")
    return None


@click.command()
@format_option
def status(fmt: str | None) -> None:
    """Where commands go: mode, data home or server, workspace, key, index backlog."""
    fmt = fmt or default_format()
    try:
        cfg = config()
        api = make_api()
    except ResourceError as exc:
        fail(exc, fmt)
    try:
        data = api.status()
    except ResourceError as exc:
        fail(exc, fmt)
    finally:
        api.close()
    data["workspace-from"] = cfg.sources.get("workspace")
    if cfg.mode == "embedded":
        data["home-from"] = cfg.sources.get("home")
    if cfg.config_file.exists():
        data["profile"] = cfg.profile
        data["config-file"] = str(cfg.config_file)
    emit({"data": data, "meta": {}}, fmt)


COMMANDS = (persist, get, read, url, list_, search, delete, status)

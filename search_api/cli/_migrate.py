"""`resources migrate`: a one-machine home into a shared PostgreSQL catalog (and S3)."""
from __future__ import annotations

import json
import sys

import click

from storage.errors import BadRequest

from ._context import format_option, run


@click.command()
@click.option("--to", "url", required=True, metavar="URL",
              help="The postgresql:// catalog to copy this home's catalog into.")
@click.option("--connection", default=None, metavar="NAME",
              help="Also copy the platform blobs to this S3 connection and point the "
                   "records at it (so every node can read them).")
@click.option("--verify", "check", is_flag=True,
              help="Compare row counts and digests of every table, and each moved blob's "
                   "sha256; exit 1 on any difference.")
@format_option
@run
def migrate(api, url: str, connection: str | None, check: bool, fmt: str) -> None:
    """Copy this data home's catalog (records, text, kv, keys, slots, ...) into a shared
    PostgreSQL catalog, resumably: run it again to finish an interrupted copy. The home
    itself is left as it was; point nodes at the URL afterwards (docs/scale-out.md)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise BadRequest("--to must be a postgresql:// URL")
    if "service" not in dir(type(api)):
        raise BadRequest("migrate works on the local data home: unset RESOURCES_API_URL")
    from ..migrate import migrate as run_migration

    def progress(step: str, done: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{step}: {done}", nl=False, err=True)
    report = run_migration(api.service, url, connection, check, progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    if fmt == "json":
        click.echo(json.dumps({"data": report, "meta": {}}))
    else:
        for table, n in report["copied"].items():
            click.echo(f"{table}: {n} row(s)")
        if connection:
            click.echo(f"blobs moved to {connection}: {report['blobs-moved']}")
        if check:
            click.echo("verify: ok" if report["verified"] else "verify: FAILED")
            for problem in report["problems"]:
                click.echo(f"  {problem}")
    if check and not report["verified"]:
        sys.exit(1)
    return None

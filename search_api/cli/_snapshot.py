"""`resources index-snapshot`: publish this node's index to a storage connection, so a
new node starts from it (RESOURCES_INDEX_SNAPSHOTS) instead of rebuilding from the
catalog (docs/scale-out.md)."""
from __future__ import annotations

import click

from storage.errors import BadRequest

from ._context import format_option, run


@click.command("index-snapshot")
@click.option("--connection", required=True, metavar="NAME",
              help="The storage connection (S3) to write the snapshot to.")
@format_option
@run
def index_snapshot(api, connection: str, fmt: str) -> dict:
    """Write a snapshot of the search index (a tar of its files and its change-log
    position) under _index-snapshots/ of a connection. Safe while `serve` runs."""
    if "service" not in dir(type(api)):
        raise BadRequest("index-snapshot works on the local data home: unset RESOURCES_API_URL")
    from indexer.snapshot import publish
    backends = api.service.backends
    if connection not in backends:
        raise BadRequest(f"unknown connection {connection!r} (known: {', '.join(backends)})")
    return {"data": publish(api.service.index, backends[connection]), "meta": {}}


def bootstrap(settings) -> None:
    """At `serve` start: with RESOURCES_INDEX_SNAPSHOTS=NAME, start from the newest
    snapshot on that connection when it is ahead of the local index (the follower then
    replays the log from its position) instead of rebuilding from the catalog."""
    import os

    from indexer.snapshot import restore
    from storage.catalog import Catalog
    from storage.connections import build_backends
    name = os.environ.get("RESOURCES_INDEX_SNAPSHOTS")
    if not name:
        return
    backends = build_backends(settings)
    if name not in backends:
        raise BadRequest(f"RESOURCES_INDEX_SNAPSHOTS names an unknown connection {name!r}")
    done = restore(settings.index_dir, backends[name])
    if not done:
        return
    if done["replaced"]:
        # The replaced index no longer follows the log: it must not hold pruning back.
        catalog = Catalog(settings.catalog_location)
        try:
            catalog.changes.drop_follower(done["replaced"])
        finally:
            catalog.close()
    # On stderr as well: an operator starting a node wants to see where it started from.
    click.echo(f"search index restored from snapshot {done['key']} (position "
               f"{done['position']}); replaying the change log from there", err=True)

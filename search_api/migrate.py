"""``resources migrate --to postgresql://… [--connection NAME] [--verify]``: move a
one-machine home (SQLite + blobs in the data home) to a shared catalog and, optionally,
its platform blobs to an S3 connection (docs/scale-out.md).

Resumable: every step skips what is already done (rows present in the target, records
already on the connection), so an interrupted migration is finished by running it again.
``--verify`` compares every copied table's row count and content digest, and re-reads
each moved blob from the connection to compare its sha256 with the record's.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from storage.catalog import Catalog
from storage.catalog.copy import TABLES, carry_sequence, copy_table, digest
from storage.errors import InvalidSpec

from .signing import load_secret

Progress = Callable[[str, int], None]


def _sha256(backend: Any, key: str) -> str:
    h = hashlib.sha256()
    for chunk in backend.open_read(key):
        h.update(chunk)
    return h.hexdigest()


def move_blobs(service: Any, target: Catalog, connection: str,
               progress: Progress | None = None) -> int:
    """Copy each platform blob to ``connection`` at the same key and point the target's
    record at it; returns how many moved now (those moved before are skipped)."""
    src, dst = service.backends["platform"], service.backends[connection]
    moved = 0
    for res in target.resources.all():
        if res.connection != "platform":
            continue
        try:
            already = dst.stat(res.path).size == res.size and _sha256(dst, res.path) == res.sha256
        except FileNotFoundError:
            already = False
        if not already:
            writer = dst.open_write(res.path, max(res.size, 1))
            try:
                for chunk in src.open_read(res.path):
                    writer.write(chunk)
                writer.finish()
                if writer.sha256 != res.sha256:
                    raise InvalidSpec(f"{res.uri}: the blob at {res.path} does not match its "
                                      f"record's sha256; fix the home (resources doctor) first")
                writer.publish()
            except BaseException:
                writer.abort()
                raise
        res.connection, res.storage_backend = connection, dst.family
        with target.transaction() as tx:
            target.resources.update(tx, res)
        moved += 1
        if progress:
            progress("blobs", moved)
    return moved


def verify(service: Any, target: Catalog, connection: str | None) -> list[str]:
    """What differs between the source and the target; [] when the migration is whole."""
    problems = []
    for table, key in TABLES:
        a = digest(service.catalog.database, table, key)
        if table == "resources" and connection:
            # Records moved to the connection differ in two fields by design: compare
            # their count here and every blob's bytes below.
            b = (target.resources.count(), a[1])
        else:
            b = digest(target.database, table, key)
        if a[0] != b[0]:
            problems.append(f"{table}: {a[0]} rows in the source, {b[0]} in the target")
        elif a[1] != b[1]:
            problems.append(f"{table}: the rows differ (digest {a[1][:12]} != {b[1][:12]})")
    source = service.catalog.resources
    for res in target.resources.all():
        old = source.get(res.id)
        if old is None or old.sha256 != res.sha256:
            problems.append(f"{res.uri}: sha256 differs from the source record")
            continue
        if connection:
            try:
                found = _sha256(service.backends[res.connection], res.path)
            except FileNotFoundError:
                found = "missing"
            if found != res.sha256:
                problems.append(f"{res.uri}: the blob on {res.connection} is {found}, "
                                f"the record says {res.sha256}")
    return problems


def migrate(service: Any, url: str, connection: str | None = None,
            check: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    if service.catalog.shared:
        raise InvalidSpec("this home already uses a shared catalog: nothing to migrate")
    if connection is not None and (connection not in service.backends or
                                   connection == "platform"):
        raise InvalidSpec(f"unknown connection {connection!r} (known: "
                          f"{', '.join(n for n in service.backends if n != 'platform')})")
    # The service was opened with recovery: no intent of the source is left half-done.
    target = Catalog(url)
    try:
        copied = {table: copy_table(service.catalog.database, target.database, table, key,
                                    progress=progress) for table, key in TABLES}
        carry_sequence(service.catalog.database, target.database)
        # Signed URLs and cursors handed out by this home stay valid on every node.
        target.keys.adopt_signing_secret(load_secret(service.settings.secret_path))
        moved = move_blobs(service, target, connection, progress) if connection else 0
        problems = verify(service, target, connection) if check else None
    finally:
        target.close()
    return {"copied": copied, "blobs-moved": moved, "verified": problems == [] if check
            else None, "problems": problems or []}

"""Index snapshots on a storage connection: a new node starts from the newest one and
replays the change log from its position, instead of rebuilding from the catalog.

A snapshot is one tar under ``_index-snapshots/`` of the connection, named by its
change-log position (zero-padded, so the newest sorts last): the live index directory's
files, taken without stopping the writer. That is safe because Tantivy never changes a
segment file, only ``meta.json`` (atomically) and deletes segments a merge replaced:
``APPLIED`` is read first (the index holds at least that position), then ``meta.json``,
then every file; a segment ``meta.json`` names that vanished meanwhile makes the copy
start again. Replaying from an older ``APPLIED`` than the files hold is harmless: every
application is an idempotent upsert.

On restore, ``SearchIndex.open`` checks the schema version and the position as for any
index: one behind the pruned end of the log is rebuilt from the catalog anyway.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from storage.backend import StorageBackend

from .index import APPLIED_FILE, VERSION_FILE, SearchIndex

PREFIX = "_index-snapshots"
_SKIP = {".tantivy-writer.lock", ".tantivy-meta.lock"}


def _segments(meta: bytes) -> set[str]:
    return {s["segment_id"].replace("-", "") for s in json.loads(meta).get("segments", [])}


def _capture(directory: Path) -> tuple[int, dict[str, bytes]]:
    """(position, file name -> bytes) of a consistent copy of a live index directory."""
    for _ in range(10):
        position = int((directory / APPLIED_FILE).read_text().strip())
        meta = (directory / "meta.json").read_bytes()
        files: dict[str, bytes] = {}
        for path in sorted(directory.iterdir()):
            if path.name in _SKIP or path.name.startswith(".") or not path.is_file() \
                    or path.name in ("meta.json", APPLIED_FILE):
                continue
            try:
                files[path.name] = path.read_bytes()
            except FileNotFoundError:
                continue             # a segment a merge just replaced
        present = {name.split(".")[0] for name in files}
        if _segments(meta) <= present:
            files["meta.json"] = meta
            files[APPLIED_FILE] = str(position).encode()
            return position, files
        time.sleep(0.05)
    raise RuntimeError("the index kept changing while it was being copied; try again")


def publish(index: SearchIndex, backend: StorageBackend) -> dict[str, Any]:
    """Write a snapshot of ``index`` to ``backend``; returns its key, position, size."""
    directory = index.link.parent / os.readlink(index.link)
    position, files = _capture(directory)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    key = f"{PREFIX}/{position:020d}-{uuid.uuid4().hex[:8]}.tar"
    writer = backend.open_write(key, len(data) + 1)
    try:
        writer.write(data)
        writer.finish()
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    return {"key": key, "position": position, "bytes": len(data)}


def newest(backend: StorageBackend) -> str | None:
    keys = [s.key for s in backend.list(PREFIX) if s.key.endswith(".tar")]
    return max(keys) if keys else None


def _local_position(link: Path) -> tuple[str | None, int]:
    """(the live index directory's name, its applied position); (None, -1): none."""
    try:
        name = os.readlink(link)
        return name, int((link.parent / name / APPLIED_FILE).read_text().strip())
    except (OSError, ValueError):
        return None, -1


def restore(link: Path, backend: StorageBackend) -> dict[str, Any] | None:
    """Make ``link`` point at the newest snapshot when there is one and it is ahead of
    the local index (none, or one a first command built from a younger catalog); returns
    what was restored (with the replaced directory's name), or None."""
    key = newest(backend)
    if key is None:
        return None
    old, have = _local_position(link)
    if link.exists() and old is None:
        return None                  # not an index link this code made: leave it alone
    if have >= int(Path(key).name.split("-")[0]):
        return None
    with tempfile.TemporaryFile() as tmp:
        for chunk in backend.open_read(key):
            tmp.write(chunk)
        tmp.seek(0)
        name = f"index-{uuid.uuid4().hex[:12]}"
        target = link.parent / name
        target.mkdir(parents=True)
        with tarfile.open(fileobj=tmp, mode="r") as tar:
            for member in tar:
                # Flat files only: a member naming a folder or a path cannot escape.
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise RuntimeError(f"snapshot {key} holds an unexpected entry {member.name!r}")
                src = tar.extractfile(member)
                assert src is not None
                (target / member.name).write_bytes(src.read())
    if not (target / VERSION_FILE).exists():
        raise RuntimeError(f"snapshot {key} has no {VERSION_FILE}")
    tmp_link = link.parent / f".index-link-{uuid.uuid4().hex[:8]}"
    os.symlink(name, tmp_link)
    os.replace(tmp_link, link)
    return {"key": key, "position": int((target / APPLIED_FILE).read_text()), "replaced": old}

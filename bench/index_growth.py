"""Figure 4: index size on disk after N one-by-one persists (each its own commit) against
the same N documents indexed in bulk (one ``service.batch()``).

Uses the two data homes of figure 2 (``bench.ingest``), so the documents are identical.
Size is every file under the live index directory (what ``<home>/index`` links to),
including files tantivy has not garbage-collected yet.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .common import dir_size, open_service


def index_stats(home: Path) -> dict[str, Any]:
    directory = Path(os.path.realpath(home / "index"))
    segments = None
    try:
        meta = json.loads((directory / "meta.json").read_text())
        segments = len(meta.get("segments", []))
    except (OSError, ValueError):
        pass
    files = sum(1 for p in directory.iterdir() if p.is_file())
    svc = open_service(home)
    try:
        docs = svc.index.count()
    finally:
        svc.close()
    return {"bytes": dir_size(directory), "segments": segments, "files": files, "docs": docs}


def run(home_one_by_one: Path, home_bulk: Path) -> dict[str, Any]:
    one = index_stats(home_one_by_one)
    bulk = index_stats(home_bulk)
    return {"docs": one["docs"], "one_by_one": one, "bulk": bulk,
            "ratio": one["bytes"] / bulk["bytes"] if bulk["bytes"] else float("nan")}

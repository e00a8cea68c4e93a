"""The JSON envelope, in one place: `{"data", "meta"}` for success, errors elsewhere.

The HTTP routes return these dicts and the embedded CLI prints them, so both faces
give the same JSON by construction; the remote CLI prints what the server sent.
"""
from __future__ import annotations

from typing import Any

from storage.records import Resource

from .service import Page


def record(res: Resource, base_url: str, **meta: Any) -> dict:
    data = res.to_json(base_url)
    return {"data": data, "meta": {"webUrl": data["webUrl"], **meta}}


def page(p: Page, base_url: str, search: bool = False) -> dict:
    items = []
    for res in p.items:
        item = res.to_json(base_url)
        if search:
            item["score"] = p.scores.get(res.id, 0.0)
            item["snippet"] = p.snippets.get(res.id, "")
        items.append(item)
    meta: dict[str, Any] = {"total": p.total, "total-relation": p.total_relation,
                            "count": len(items), "limit": p.limit,
                            "next-cursor": p.next_cursor}
    if p.facets is not None:
        meta["facets"] = p.facets
    if p.mode:
        meta["mode"] = p.mode
    if p.semantic_pending is not None:
        meta["semantic-pending"] = p.semantic_pending
    if p.index is not None:
        meta["index"] = p.index
    return {"data": {"items": items}, "meta": meta}


def plain(data: Any, **meta: Any) -> dict:
    return {"data": data, "meta": meta}


def workflow_deleted(removed: list[Resource], dry_run: bool = False) -> dict:
    """A run's cleanup, done (``deleted``) or previewed (``would-delete``)."""
    if dry_run:
        return plain({"would-delete": [r.uri for r in removed]}, count=len(removed),
                     **{"dry-run": True})
    return plain({"deleted": [r.uri for r in removed]}, count=len(removed))

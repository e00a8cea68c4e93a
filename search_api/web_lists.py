"""Operator lists of the web view: table sorting, relative times, query syntax help and
the HTML 404 of unknown /ui/ paths. Presentation only; the search itself is the core's.
"""
from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage import clock
from storage.clock import rfc3339
from storage.errors import NotFound
from storage.records import Resource

#: Sortable columns of the table mode -> the record's key. The index orders by score or
#: newest; these order the page on screen (a whole-index sort needs fast fields).
SORT_KEYS: dict[str, Callable[[Resource], Any]] = {
    "name": lambda r: (r.display_name or "").casefold(),
    "type": lambda r: ((r.content_type or "").lower(), r.type),
    "size": lambda r: r.size,
    "step": lambda r: ((r.flow or ""), (r.step or "")),
    "age": lambda r: -r.created_at,          # ascending age: newest first
}

#: Shown under a query the parser refused (Tantivy's query language, as the API takes it).
SYNTAX_HELP = (
    ("report quarterly", "both words (keyword-mode all)"),
    ('"quarterly report"', "the exact phrase"),
    ("report OR invoice", "either word"),
    ("report -draft", "without a word"),
    ("tag:finance", "a field: tag, filename, display-name, flow, step, workflow-id, content-type"),
    ("(report OR invoice) AND tag:finance", "grouping"),
)


def parse_sort(value: str | None) -> tuple[str | None, bool]:
    """("size", True) for ``-size``; (None, False) for no or an unknown column."""
    if not value:
        return None, False
    desc = value.startswith("-")
    key = value.lstrip("-")
    return (key, desc) if key in SORT_KEYS else (None, False)


def sort_items(items: list[Resource], key: str | None, desc: bool) -> list[Resource]:
    if key is None:
        return items
    return sorted(items, key=SORT_KEYS[key], reverse=desc)


def relative_time(ts: float | None, now: float | None = None) -> str:
    """'5 min ago', '3 h ago', '2 d ago', 'in 4 h' (the exact time goes in a title)."""
    if ts is None:
        return ""
    delta = (clock.now() if now is None else now) - ts
    future = delta < 0
    delta = abs(delta)
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h"),
                              (86400 * 60, 86400, "d"), (86400 * 730, 86400 * 30, "mo"),
                              (float("inf"), 86400 * 365, "y")):
        if delta < limit:
            n = int(delta // size)
            if unit == "s" and n < 10:
                return "just now"
            return f"in {n} {unit}" if future else f"{n} {unit} ago"
    return rfc3339(ts)


async def unknown_ui_path(request: Request) -> Response:
    """Any /ui/ path no route knows: the web view's own 404 page, not the API's JSON."""
    from .web_base import page

    @page
    async def handler(request: Request) -> Response:
        raise NotFound("no such page in the web view")
    return await handler(request)


#: Registered after every other /ui/ route.
fallback_routes = [Route("/ui/{rest:path}", unknown_ui_path, methods=["GET"])]

"""Read models of the web view (search_api/web.py): facets, previews, run pages.

A mixin of ResourceService: these only read through the core's own search and catalog.
"""
from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from indexer.query import Filters, parse_text
from indexer.thumbs import Thumb, Thumbnailer, thumbnail_kind
from storage.layout import check_workspace
from storage.records import Resource

from .auth import Principal

_THUMBS_LOCK = threading.Lock()
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/tab-separated-values"})
#: What a CSV preview shows: the first rows and columns, each cell cut.
CSV_ROWS, CSV_COLS, CSV_CELL = 50, 30, 200


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    """The first CSV_ROWS rows (header first) of already bounded text."""
    import csv
    import io
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            rows.append([cell[:CSV_CELL] for cell in row[:CSV_COLS]])
            if len(rows) > CSV_ROWS:
                break
    except csv.Error:
        pass                      # a ragged tail (the text was cut): show what parsed
    return rows


def _json_nodes(value: Any, limit: int) -> int:
    """How many nodes the folded tree would have (stops counting past ``limit``)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count

if TYPE_CHECKING:
    from .service import ResourceService  # noqa: F401


def web_facets(page: Any, tiers: list[str], max_roots: int = 100) -> dict[str, Any]:
    """The web view's facet lists from a search page asked with ``facets=all``.

    Type and tier list every possible value (0 when nothing matches); storage roots are
    the values found plus a ``None`` bucket for resources without a root. The counts
    come from the same query as ``page.total`` (one aggregation, indexer/facets.py)."""
    raw = page.facets or {}

    def counts(name: str) -> dict[str, int]:
        return {b["value"]: b["count"] for b in raw.get(name, {}).get("buckets", [])}

    def pairs(name: str) -> list[tuple[str, int]]:
        return [(b["value"], b["count"]) for b in raw.get(name, {}).get("buckets", [])]
    types, tier_counts = counts("type"), counts("tier")
    roots: list[tuple[str | None, int]] = list(pairs("storage-root"))[:max_roots]
    root_facet = raw.get("storage-root", {})
    capped = bool(root_facet.get("other"))
    if not capped:
        roots.append((None, int(root_facet.get("missing", 0))))
    # Past 10,000 matches the counts are estimates from a sample (indexer/facets.py).
    sample = next((f["sample"] for f in raw.values() if "sample" in f), None)
    return {"total": page.total, "total-relation": page.total_relation, "sample": sample,
            "type": [(t, types.get(t, 0)) for t in ("file", "result")],
            "tier": [(t, tier_counts.get(t, 0)) for t in tiers],
            "storage-root": roots, "roots-capped": capped,
            "slot": pairs("slot"), "content-major": pairs("content-major"),
            "tag": pairs("tag"), "workflow-id": pairs("workflow-id")}


class ViewsMixin:
    """Web-view reads; mixed into ResourceService (``self`` is the service)."""

    # -- web view (search_api/web.py) ----------------------------------------------------
    def web_principal(self, key_id: str) -> Principal | None:
        """The key behind a web session, re-read on every request (None once it is gone)."""
        row = self.catalog.keys.get(key_id)
        if row is None:
            return None
        return Principal(key_id, row[0], frozenset(json.loads(row[2])))

    def facets(self, workspace: str, q: str | None, params: dict[str, Any] | None = None,
               keyword_mode: str = "all", max_roots: int = 100) -> dict[str, Any]:
        """Counts per type, tier, storage root (and slot, content major, tag, workflow) of
        what the same search matches: one search (the total) and one aggregation."""
        page = self.search(workspace, q, {**(params or {}), "facets": "all",
                                          "facet-size": min(max_roots, 200)},
                           1, None, keyword_mode)
        return web_facets(page, list(self.settings.tiers), max_roots)

    def storage_roots(self, workspace: str) -> list[str]:
        return self.catalog.resources.storage_roots(check_workspace(workspace))[:500]

    def preview(self, workspace: str, id_: str, max_bytes: int = 64 * 1024,
                pdf_chars: int = 5000) -> dict[str, Any]:
        """What the web view shows of a resource's content, bounded: ``kind`` is
        text | json | image | pdf | none; ``text`` is plain (the template escapes it)."""
        from indexer.extract import decode_text
        res = self.get_by_id(workspace, id_)
        ctype = (res.content_type or "").split(";")[0].strip().lower()
        out: dict[str, Any] = {"resource": res, "kind": "none", "text": None,
                               "truncated": False, "error": None}

        def head(limit: int) -> bytes:
            if res.size == 0:
                return b""
            _, _, _, chunks = self.read(workspace, res.uri, (0, limit - 1))
            return b"".join(chunks)

        if ctype.startswith("image/"):
            out["kind"] = "image"
        elif ctype == "application/pdf" or res.extraction.extractor == "pdf":
            out["kind"] = "pdf"
            # The text extracted at persist, never a fresh extraction: a page view is a
            # read, and re-running the PDF worker for each one let read-only sessions
            # queue behind one locked worker and stall the API (issue 14, item 6).
            text = self.catalog.resources.extract_text(res.id)[:pdf_chars + 1]
            error = res.extraction.error
            out.update(text=text[:pdf_chars], error=error,
                       truncated=len(text) > pdf_chars)
        elif res.type == "result" or ctype == "application/json" or ctype.endswith("+json"):
            limit = 4 * max_bytes
            data = head(limit)
            if res.size <= limit:
                try:
                    parsed = json.loads(data)
                    out.update(kind="json", text=json.dumps(parsed, indent=2,
                                                            ensure_ascii=False)[:limit])
                    # Folded tree only while it stays a page, not a DOM of 100k nodes.
                    out["data"] = parsed if _json_nodes(parsed, 3000) <= 3000 else None
                    return out
                except (ValueError, RecursionError):
                    pass          # not JSON, or nested too deep to fold: shown as text
            text, _ = decode_text(data[:max_bytes])
            out.update(kind="text", text=text, truncated=res.size > max_bytes,
                       lines=text.count("\n") + 1)
        elif res.extraction.extractor == "text" or ctype.startswith("text/"):
            text, _ = decode_text(head(max_bytes))
            out.update(kind="text", text=text, truncated=res.size > max_bytes,
                       lines=text.count("\n") + 1)
            if ctype in CSV_TYPES or res.filename.lower().endswith((".csv", ".tsv")):
                out.update(kind="csv", rows=_csv_rows(text, "\t" if ctype ==
                                                      "text/tab-separated-values" or
                                                      res.filename.lower().endswith(".tsv")
                                                      else ","))
        return out

    def workflow_run(self, workspace: str, workflow_id: str, max_items: int = 1000
                     ) -> tuple[list[Resource], int]:
        """(resources of a run, newest first, at most ``max_items``; the run's total)."""
        items: list[Resource] = []
        cursor, total = None, 0
        while len(items) < max_items:
            page = self.search(workspace, None, {"workflow-id": workflow_id,
                                                 "exact-total": True}, 100, cursor)
            items.extend(page.items)
            total, cursor = page.total, page.next_cursor
            if not cursor:
                break
        return items[:max_items], total

    # -- thumbnails (indexer/thumbs.py) ----------------------------------------------------
    @property
    def thumbnailer(self) -> Thumbnailer:
        with _THUMBS_LOCK:           # one per service, even when two requests ask at once
            return self._make_thumbnailer()

    def _make_thumbnailer(self) -> Thumbnailer:
        thumbs = getattr(self, "_thumbnailer", None)
        if thumbs is None:
            import os
            thumbs = Thumbnailer(
                self.settings.home / "thumbs",
                int(os.environ.get("RESOURCES_THUMB_CACHE_BYTES", 256 * 1024 * 1024)),
                float(os.environ.get("RESOURCES_THUMB_TIMEOUT_SECONDS", 3.0)))
            self._thumbnailer = thumbs
        return thumbs

    def thumbnail(self, res: Resource, size: str = "small") -> Thumb:
        """The cached thumbnail of a record the caller may read (made once, on first ask)."""
        def fetch(path: Any) -> None:
            _, _, _, chunks = self.read(res.workspace, res.uri)
            with open(path, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
        return self.thumbnailer.get(res.sha256, size, thumbnail_kind(res.content_type),
                                    res.size, fetch)

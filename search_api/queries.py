"""Reads: one resource, its bytes, and pages of search and list.

Paging lives here beside the index: a page is one searcher (one commit) for the hits,
their facets and their total, hydrated by one catalog query; cursors are signed and
bound to the query's fingerprint, so an edited cursor is a 400, never a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from indexer.facets import parse_facet_size, parse_facets
from indexer.filterspec import SEARCH_MODES
from indexer.index import SearchIndex
from indexer.query import (MAX_RESULT_WINDOW, Filters, check_window, decode_cursor,
                           encode_cursor, fingerprint, parse_limit, parse_flag, parse_text)
from storage.backend import StorageBackend
from storage.catalog import Catalog
from storage.errors import InvalidSpec, NotEnabled, NotFound, RangeNotSatisfiable
from storage.layout import check_workspace
from storage.records import Resource, Slot, parse_uri

from .meaning import ranked_by_meaning
from .signing import Signer


@dataclass
class Page:
    items: list[Resource]
    total: int
    limit: int
    next_cursor: str | None
    scores: dict[str, float] = field(default_factory=dict)
    snippets: dict[str, str] = field(default_factory=dict)
    mode: str | None = None
    total_relation: str = "eq"            # "gte": total is a lower bound (the threshold)
    facets: dict[str, Any] | None = None  # indexer.facets.read_aggregation's shape
    #: Where the index that answered stands in the change log (position, lag).
    index: dict[str, Any] | None = None
    #: Resources of the workspace not embedded yet (semantic and hybrid searches).
    semantic_pending: int | None = None



class Queries:
    def __init__(self, catalog: Catalog, backends: Mapping[str, StorageBackend],
                 index: SearchIndex, signer: Signer, slot: Callable[[str, str], Slot],
                 now: Callable[[], float], semantic: Callable[[], Any] | None = None) -> None:
        self.catalog = catalog
        self.backends = backends
        self.index = index
        self.signer = signer
        self._slot = slot
        self.now = now
        #: The embedding index, caught up and loaded (None: semantic search is off).
        self._semantic = semantic

    # -- read ----------------------------------------------------------------------------
    def get(self, workspace: str, uri: str) -> Resource:
        ws, type_, id_ = parse_uri(uri)
        res = self.catalog.resources.get(id_)
        if (res is None or ws != workspace or res.workspace != workspace or res.type != type_
                or (res.expires_at is not None and res.expires_at <= self.now())):
            raise NotFound("resource not found")
        return res

    def get_by_id(self, workspace: str, id_: str) -> Resource:
        res = self.catalog.resources.get(id_)
        if res is None or res.workspace != workspace:
            raise NotFound("resource not found")
        return self.get(workspace, res.uri)

    def read(self, workspace: str, uri: str, byte_range: tuple[int | None, int | None] | None = None
             ) -> tuple[Resource, int, int, Iterator[bytes]]:
        """(record, start, end, chunks); ``end`` inclusive. Raises RangeNotSatisfiable."""
        res = self.get(workspace, uri)
        start, end = 0, res.size - 1
        if byte_range is not None:
            first, last = byte_range
            if first is None:                     # suffix range: last N bytes
                if not last:
                    raise RangeNotSatisfiable(f"range not satisfiable for {res.size} bytes",
                                              size=res.size)
                start, end = max(res.size - last, 0), res.size - 1
            else:
                start = first
                end = min(last if last is not None else res.size - 1, res.size - 1)
            if start >= res.size or start > end:
                raise RangeNotSatisfiable(f"range not satisfiable for {res.size} bytes",
                                          size=res.size)
        if res.size == 0:
            return res, 0, -1, iter(())
        try:
            chunks = self.backends[res.connection].open_read(res.path, start, end)
        except FileNotFoundError:
            raise NotFound("resource content is missing (run `resources doctor`)") from None
        return res, start, end, chunks

    # -- search and list -----------------------------------------------------------------
    def search(self, workspace: str, q: str | None, params: dict[str, Any] | None = None,
               limit: Any = None, cursor: str | None = None, keyword_mode: str = "all",
               offset: int | None = None, mode: str | None = None) -> Page:
        """One page of a search (``q``) or of a newest-first list (no ``q``).

        Besides the filters, ``params`` may hold ``exact-total`` (count past the
        threshold; default no: beyond 10,000 the total is a lower bound with
        ``total_relation`` "gte"), ``facets`` (names or ``all``: counts per value in one
        aggregation, ``Page.facets``) and ``facet-size``. None of them changes which
        items come back, so cursors do not depend on them.

        ``mode`` (or ``params["mode"]``): lexical (default), semantic or hybrid
        (meaning.py; docs/search.md)."""
        check_workspace(workspace)
        params = params or {}
        mode = mode or params.get("mode") or "lexical"
        if mode not in SEARCH_MODES:
            raise InvalidSpec(f"mode must be one of {', '.join(SEARCH_MODES)}, not {mode!r}")
        if mode != "lexical" and self._semantic is None:
            raise NotEnabled(f"mode={mode} needs semantic search, which this deployment "
                             f"turned off (RESOURCES_SEMANTIC=off): use mode=lexical")
        filters = Filters.from_params(params)
        exact_total = parse_flag(params.get("exact-total"), "exact-total")
        facet_names = parse_facets(params.get("facets"))
        facet_size = parse_facet_size(params.get("facet-size"))
        if filters.slot:
            slot = self._slot(workspace, filters.slot)
            filters.storage_backend = self.backends[slot.connection].family
            filters.storage_root = slot.root
        limit = parse_limit(limit)
        text_query = parse_text(self.index._current(workspace), q or "", keyword_mode)
        if mode != "lexical" and text_query is not None:
            return ranked_by_meaning(self, self._semantic(), workspace, q or "", text_query,
                                     filters, mode, keyword_mode, limit, cursor, offset,
                                     facet_names, facet_size)
        # newest without words pages by keyset (stable under inserts), relevance by
        # score; every other order is a fast field, paged by offset.
        sort = filters.sort or ("relevance" if text_query is not None else "newest")
        if sort == "relevance" and text_query is None:
            sort = "newest"
        order = {"newest": "newest" if text_query is None else "by-field",
                 "relevance": "score"}.get(sort, "by-field")
        order_by = _SORT_FIELDS[sort] if order == "by-field" else None
        fp = fingerprint(workspace, q or "", filters, keyword_mode, order)
        decoded = decode_cursor(cursor, fp, self.signer.cursor_secret)
        start = offset or 0
        before_seq = None
        if decoded:
            kind, value = decoded
            if kind == "off":
                start = value
            else:
                before_seq = value
        if order == "newest" and offset:
            raise InvalidSpec("offset paging applies to ranked search; use the cursor")
        if order != "newest":
            check_window(start, limit)
        now = int(self.now())
        # One searcher (one commit) for the page and its facets: the counts agree with it.
        # It is the workspace's partition's: a big workspace's own index, without the
        # workspace clause (indexer/partitions.py).
        searcher = self.index.searcher(workspace)
        page = self.index.search(workspace, text_query, filters, now, limit,
                                 offset=start, before_seq=before_seq, exact_total=exact_total,
                                 searcher=searcher, order_by=order_by)
        # One catalog query for the page's records; snippets were made for these hits only.
        records = self.catalog.records.get_many([h.id for h in page.hits])
        items = [records[h.id] for h in page.hits if h.id in records]
        next_cursor = None
        # An offset page at the end of the ranked window offers no next page: its cursor
        # could only be refused (MAX_RESULT_WINDOW).
        if page.more and (order == "newest" or start + 2 * limit <= MAX_RESULT_WINDOW):
            secret = self.signer.cursor_secret
            next_cursor = (encode_cursor("seq", page.hits[-1].seq, fp, secret)
                           if order == "newest" else
                           encode_cursor("off", start + limit, fp, secret))
        facets = None
        if facet_names:
            facets = self.index.facets(workspace, text_query, filters, now, facet_names,
                                       facet_size, searcher=searcher, exact=exact_total,
                                       matched=page.matched)
        return Page(items, page.total, limit, next_cursor,
                    scores={h.id: h.score for h in page.hits},
                    snippets={h.id: h.snippet for h in page.hits},
                    mode="lexical" if text_query is not None else None,
                    total_relation=page.relation, facets=facets,
                    index=self.index_position())

    def list(self, workspace: str, params: dict[str, Any] | None = None, limit: Any = None,
             cursor: str | None = None) -> Page:
        """Newest first (most recently written first), same filters, no text query."""
        return self.search(workspace, None, params, limit, cursor)

    def workflow_resources(self, workspace: str, workflow_id: str, step: str | None = None,
                           limit: Any = None, cursor: str | None = None) -> Page:
        params: dict[str, Any] = {"workflow-id": workflow_id}
        if step:
            params["step"] = step
        return self.search(workspace, None, params, limit, cursor)

    def index_position(self) -> dict[str, Any]:
        """This process's index in the change log: the position its searches show, how
        many changes and seconds it is behind the catalog."""
        st = self.index.status()
        return {"position": st["position"], "behind": st["behind"],
                "lag-seconds": st["lag-seconds"]}


#: Index field and direction (ascending?) of each sort that is not relevance/keyset.
_SORT_FIELDS = {"newest": ("seq", False), "oldest": ("seq", True), "name": ("name_sort", True),
                "size": ("size", False)}

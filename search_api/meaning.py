"""Semantic and hybrid pages (``mode=semantic|hybrid``; docs/search.md).

Kept apart from queries.py (the lexical pages): the same filters, cursors and window,
but ranked by the embedding of the query against each resource's best chunk, and for
hybrid fused with the BM25 list by reciprocal rank fusion.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from indexer.query import (MAX_RESULT_WINDOW, Filters, check_window, decode_cursor,
                           encode_cursor, fingerprint)
from indexer.schema import effective_content
from storage.errors import InvalidSpec
from storage.events import emit

if TYPE_CHECKING:
    from .queries import Queries


def ranked_by_meaning(self: "Queries", sem: Any, workspace: str, q: str, text_query: Any, filters: Filters,
                       mode: str, keyword_mode: str, limit: int, cursor: str | None,
                       offset: int | None, facet_names: list[str], facet_size: int) -> Page:
    """A semantic or hybrid page. Semantic: documents by their best chunk's cosine
    to the query. Hybrid: reciprocal rank fusion (k=60, weight 1 each) of the BM25
    top-N and the vector top-N, N = max(50, what the page needs). Every filter is
    the lexical search's own Tantivy query (indexer.semantic.rank); a resource whose
    record is gone or changed since its vectors were made is never returned."""
    from .queries import Page      # queries.py imports this module
    from indexer.fusion import HYBRID_DEPTH, RRF_K, lexical_side, rank, rrf
    if filters.sort not in (None, "relevance"):
        raise InvalidSpec(f"sort={filters.sort} applies to lexical search; {mode} "
                          f"search ranks by meaning (sort=relevance)")
    fp = fingerprint(workspace, q, filters, keyword_mode, mode)
    decoded = decode_cursor(cursor, fp, self.signer.cursor_secret)
    start = offset or 0
    if decoded:
        kind, value = decoded
        if kind != "off":
            raise InvalidSpec("this cursor does not belong to this search")
        start = value
    check_window(start, limit)
    want = start + limit + 1
    now = int(self.now())
    searcher = self.index.searcher(workspace)
    fq = self.index.query(workspace, None, filters, now, searcher)
    allowed_count = int(searcher.search(fq, 1, count=True).count or 0)

    def current(ids: list[str]) -> set[str]:
        return sem.current(ids, workspace)

    def allowed_among(ids: list[str]) -> set[str]:
        return current(sem.ids_for_seqs(self.index.seqs_matching(fq, searcher, among=ids)))

    def allowed_all() -> list[str]:
        return sem.ids_for_seqs(self.index.seqs_matching(fq, searcher, limit=allowed_count))

    started = time.monotonic()
    qvec = sem.embed_query(q)
    depth = want if mode == "semantic" else max(HYBRID_DEPTH, want)
    vector = rank(sem, qvec, workspace, depth, allowed_count, allowed_all, allowed_among)
    if allowed_count <= 0:
        vector = []
    else:
        # the exact scan returns every allowed document: keep the current ones, in
        # order, until the page is full
        kept, i = [], 0
        while len(kept) < depth and i < len(vector):
            part = vector[i:i + 2 * depth]
            ok = current([v[0] for v in part])
            kept.extend(v for v in part if v[0] in ok)
            i += len(part)
        vector = kept[:depth]
    chunk_of = {v[0]: v[1] for v in vector}
    lexical_snippets: dict[str, str] = {}
    if mode == "semantic":
        ranked = [(v[0], v[2]) for v in vector]
    else:
        # The precise half: every content word required, stop words left out (a
        # loose BM25 list would be noise that fusion trusts; lexical_side says why).
        lex_query = lexical_side(self.index._current(workspace), q, text_query, keyword_mode)
        hits = [] if lex_query is None else self.index.search(
            workspace, lex_query, filters, now, depth, snippets=False,
            searcher=searcher).hits
        ranked = rrf([[h.id for h in hits], [v[0] for v in vector]], k=RRF_K)
        lexical_ids = {h.id for h in hits}
    page_ids = [i for i, _ in ranked[start:start + limit]]
    records = self.catalog.records.get_many(page_ids)
    page_ids = [i for i in page_ids if i in records]
    if mode == "hybrid":
        lexical_snippets = self.index.snippets_for(
            searcher, lex_query, [i for i in page_ids if i in lexical_ids])
    texts = self.catalog.resources.extract_texts([i for i in page_ids if i not in lexical_snippets
                                        and i in chunk_of])
    from_chunks = sem.snippets({
        i: (chunk_of[i], effective_content(records[i], texts.get(i, ""))[0])
        for i in page_ids if i in chunk_of and "<b>" not in lexical_snippets.get(i, "")})
    snippets = {i: from_chunks.get(i) or lexical_snippets.get(i, "") for i in page_ids}
    emit("search.semantic", mode=mode, seconds=time.monotonic() - started)
    next_cursor = None
    if len(ranked) > start + limit and start + 2 * limit <= MAX_RESULT_WINDOW:
        next_cursor = encode_cursor("off", start + limit, fp, self.signer.cursor_secret)
    facets = None
    if facet_names:
        facets = self.index.facets(workspace, None, filters, now, facet_names,
                                   facet_size, searcher=searcher)
    scores = dict(ranked)
    return Page([records[i] for i in page_ids], allowed_count, limit, next_cursor,
                scores={i: round(scores[i], 6) for i in page_ids}, snippets=snippets,
                mode=mode, facets=facets, index=self.index_position(),
                semantic_pending=sem.pending(workspace))

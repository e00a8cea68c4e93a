"""The read side of the search index: the one boolean query of a search, a page of hits
with its total (exact up to a threshold), facet counts from the same query, snippets.

``IndexReader`` is a mixin of ``index.SearchIndex``: it needs ``schema``,
``total_threshold`` and ``_current(workspace)`` (the live partition that holds the
workspace, partitions.py) from it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import tantivy

from .facets import DEFAULT_FACET_SIZE, aggregation_request, read_aggregation
from .query import Filters, expired_query, filter_clauses
from .schema import SNIPPET_FIELDS

#: Totals are exact up to here; beyond, ``gte`` unless the caller asks for exact.
TOTAL_THRESHOLD = 10_000


@dataclass
class Hit:
    id: str
    score: float
    seq: int
    snippet: str


@dataclass
class HitPage:
    hits: list[Hit]
    total: int               # exact, or a lower bound when relation == "gte"
    relation: str = "eq"     # "eq" | "gte"
    more: bool = False       # a next page exists (from one extra hit, not the total)


class IndexReader:
    schema: Any
    total_threshold: int

    def _current(self, workspace: str | None = None) -> tantivy.Index:
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------------
    def searcher(self, workspace: str | None = None) -> tantivy.Searcher:
        """A searcher of the partition that holds ``workspace`` (the shared one without):
        a search must be given the one of its own workspace."""
        return self._current(workspace).searcher()

    def query(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
              now: int, searcher: tantivy.Searcher) -> tantivy.Query:
        """The one boolean query of a search: the words (scored) AND every filter.

        Filters are flat Must clauses, each wrapped in a zero const-score so BM25 sees
        only the words; the workspace clause is left out when the index holds no other
        workspace (``_only_workspace``). Expiry is a MustNot of the *expired* range, and only when this
        searcher holds an expired document at all (a tiny term-dictionary lookup): after
        a gc sweep the clause, which costs a check per candidate, is left out, with the
        same result. bench/tenancy.py has the figures.
        """
        must, must_not = filter_clauses(self.schema, workspace, filters, now)
        if self._only_workspace(searcher, workspace):
            must = must[1:]       # filter_clauses puts the workspace clause first
        expired = expired_query(self.schema, now)
        if searcher.search(expired, 1, count=True).count:
            must_not.insert(0, expired)
        clauses = [(tantivy.Occur.Must, tantivy.Query.const_score_query(q, 0.0)) for q in must]
        if text_query is not None:
            clauses.insert(0, (tantivy.Occur.Must, text_query))
        if not clauses:
            # A browse of a one-workspace index without filters: a boolean query with no
            # positive clause matches nothing, so say "everything" explicitly.
            clauses.append((tantivy.Occur.Must, tantivy.Query.all_query()))
        clauses += [(tantivy.Occur.MustNot, q) for q in must_not]
        return tantivy.Query.boolean_query(clauses)

    @staticmethod
    def _only_workspace(searcher: tantivy.Searcher, workspace: str) -> bool:
        """True when every document this searcher can see belongs to ``workspace``.

        Then the workspace clause selects everything and only costs an intersection
        with a list as long as the index (the partition rows of bench/tenancy.py: a
        search then costs what it does on that workspace's documents alone). Exact, for
        this searcher's commit: the term dictionary keeps the workspace of every
        document, deleted ones included, so a single term means no other workspace.
        The first test is O(1) and settles the usual shared index: fewer postings for
        this workspace than live documents means another workspace has some."""
        if searcher.doc_freq("workspace", workspace) < searcher.num_docs:
            return False
        terms = searcher.terms_with_prefix("workspace", "", limit=2)
        return len(terms) == 1 and terms[0][0] == workspace

    def search(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
               now: int, limit: int, offset: int = 0, before_seq: int | None = None,
               snippets: bool = True, exact_total: bool = True,
               searcher: tantivy.Searcher | None = None,
               order_by: tuple[str, bool] | None = None) -> HitPage:
        """One page of hits, ``more`` when a next page exists, and the total.

        ``order_by`` (field, ascending) pages by offset in that field's order; without
        it, a text query ranks by relevance and browsing goes newest first by keyset.
        The total is exact up to TOTAL_THRESHOLD; beyond it, unless ``exact_total``, it
        is reported as TOTAL_THRESHOLD with relation ``gte`` (Elasticsearch's
        ``track_total_hits``). tantivy-py wraps every search in a MultiCollector, so
        top-k never prunes and the count in the same pass is nearly free; what the
        threshold saves today is the second counting pass of later browse pages.
        Pass ``searcher`` to read the same commit as another call (``facets``).
        """
        searcher = searcher or self.searcher(workspace)
        query = self.query(workspace, text_query, filters, now, searcher)
        fetch = limit + 1      # one extra hit says whether a next page exists
        if order_by is not None:
            name, ascending = order_by
            result = searcher.search(query, fetch, count=True, order_by_field=name,
                                     order=tantivy.Order.Asc if ascending else tantivy.Order.Desc,
                                     offset=offset)
            total = result.count
        elif text_query is None:
            # Browsing: newest first with a keyset cursor (stable under inserts). The
            # first page gets its total from the same pass; later pages are narrowed
            # to older entries, so their count is only a lower bound of the total.
            if before_seq is None:
                result = searcher.search(query, fetch, count=True, order_by_field="seq",
                                         order=tantivy.Order.Desc)
                total = result.count
            else:
                narrowed = tantivy.Query.boolean_query([
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.range_query(
                        self.schema, "seq", tantivy.FieldType.Integer, 0, before_seq - 1))])
                result = searcher.search(narrowed, fetch, count=True, order_by_field="seq",
                                         order=tantivy.Order.Desc)
                total = result.count
                if exact_total or total <= self.total_threshold:
                    total = searcher.search(query, 1, count=True).count   # limit 0 panics
        else:
            result = searcher.search(query, fetch, count=True, offset=offset)
            total = result.count
        total = int(total or 0)
        relation = "eq"
        if not exact_total and total > self.total_threshold:
            total, relation = self.total_threshold, "gte"
        hits = []
        generators: dict[str, tantivy.SnippetGenerator] = {}
        for score, address in result.hits[:limit]:
            doc = searcher.doc(address)
            snippet = ""
            if snippets and text_query is not None:
                snippet = self._snippet(searcher, text_query, doc, generators)
            ranked = text_query is not None and order_by is None
            hits.append(Hit(doc["id"][0], float(score) if ranked else 0.0,
                            int(doc["seq"][0]), snippet))
        return HitPage(hits, total, relation, len(result.hits) > limit)

    def seqs_matching(self, query: tantivy.Query, searcher: tantivy.Searcher,
                      among: list[str] | None = None, limit: int = 1) -> list[int]:
        """The ``seq`` of every document ``query`` matches (only among the ids ``among``
        when given): how semantic search applies exactly the same filters as a lexical
        one. Read from the fast field the hits are ordered by, no stored document."""
        if among is not None:
            if not among:
                return []
            query = tantivy.Query.boolean_query([
                (tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.term_set_query(self.schema, "id", among))])
            limit = len(among)
        result = searcher.search(query, max(limit, 1), count=False, order_by_field="seq",
                                 order=tantivy.Order.Desc)
        return [int(seq) for seq, _ in result.hits]

    def snippets_for(self, searcher: tantivy.Searcher, text_query: tantivy.Query,
                     ids: list[str]) -> dict[str, str]:
        """Highlighted snippets of ``ids`` for ``text_query`` (hybrid pages)."""
        if not ids:
            return {}
        query = tantivy.Query.term_set_query(self.schema, "id", ids)
        generators: dict[str, tantivy.SnippetGenerator] = {}
        out = {}
        for _, address in searcher.search(query, len(ids), count=False).hits:
            doc = searcher.doc(address)
            out[doc["id"][0]] = self._snippet(searcher, text_query, doc, generators)
        return out

    def facets(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
               now: int, names: list[str], size: int = DEFAULT_FACET_SIZE,
               searcher: tantivy.Searcher | None = None) -> dict[str, Any]:
        """Counts per value of each facet for the same query as ``search``, in one pass."""
        if not names:
            return {}
        searcher = searcher or self.searcher(workspace)
        query = self.query(workspace, text_query, filters, now, searcher)
        result = searcher.aggregate(query, aggregation_request(size, names))
        return read_aggregation(result, names, size)

    def _snippet(self, searcher, query, doc, generators: dict) -> str:
        for name in SNIPPET_FIELDS:
            gen = generators.get(name)
            if gen is None:
                gen = generators[name] = tantivy.SnippetGenerator.create(
                    searcher, query, self.schema, name)
                gen.set_max_num_chars(200)
            snippet = gen.snippet_from_doc(doc)
            if snippet.highlighted():
                return snippet.to_html()
        text = (doc.to_dict().get("content") or [""])[0]
        return html.escape(text[:200])

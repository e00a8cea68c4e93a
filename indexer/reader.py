"""The read side of the search index: the one boolean query of a search, a page of hits
with its total (exact up to a threshold), facet counts from the same query, snippets.

``IndexReader`` is a mixin of ``index.SearchIndex``: it needs ``schema``,
``total_threshold`` and ``_current(workspace)`` (the live partition that holds the
workspace, partitions.py) from it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterator

import tantivy

from .facets import (DEFAULT_FACET_SIZE, FACET_SAMPLE_DOCS, aggregation_request,
                     read_aggregation, sample_buckets)
from .partitions import Partitions
from .query import Filters, expired_query, filter_clauses
from .schema import SNIPPET_FIELDS

#: Totals are exact up to here; beyond, ``gte`` unless the caller asks for exact.
TOTAL_THRESHOLD = 10_000
#: Up to this many expired, unswept documents (in one searcher) are dropped from a page's
#: hits after the search instead of by a MustNot clause, which costs a check per
#: candidate (~20% of a common word's search); beyond, the clause is cheaper again.
POSTFILTER_MAX = 256
#: Hits fetched past a page for the expired ones to drop (all of them only when short).
POSTFILTER_SLACK = 8


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
    #: How many documents the query matches, when this page counted them all (not a
    #: later browse page): what sampled facets scale their counts to.
    matched: int | None = None


@dataclass
class _Plan:
    """A search's query without expiry, and the expired documents it must leave out:
    the query itself (``expired``), and their addresses in this searcher (``dropped``,
    empty when none; None when more than POSTFILTER_MAX, too many to drop afterwards)."""
    query: tantivy.Query
    expired: tantivy.Query | None
    dropped: set[tuple[int, int]] | None

    def excluding_expired(self) -> tantivy.Query:
        if self.expired is None:
            return self.query
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, self.query),
                                            (tantivy.Occur.MustNot, self.expired)])


class IndexReader:
    schema: Any
    total_threshold: int
    #: Broad queries' facets count about this many documents (attribute: tests lower it).
    facet_sample_docs: int = FACET_SAMPLE_DOCS

    def _current(self, workspace: str | None = None) -> tantivy.Index:
        raise NotImplementedError

    def _live(self) -> Partitions:
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------------
    def searcher(self, workspace: str | None = None) -> tantivy.Searcher:
        """A searcher of the partition that holds ``workspace`` (the shared one without):
        a search must be given the one of its own workspace."""
        return self._current(workspace).searcher()

    def query(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
              now: int, searcher: tantivy.Searcher) -> tantivy.Query:
        """The one boolean query of a search: the words (scored) AND every filter, AND
        NOT expired (facets and semantic filters use this whole query)."""
        plan = self._plan(workspace, text_query, filters, now, searcher, addresses=False)
        return plan.excluding_expired()

    def _plan(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
              now: int, searcher: tantivy.Searcher, addresses: bool = True) -> _Plan:
        """The query without expiry, and the expired documents to leave out.

        Filters are flat Must clauses, each wrapped in a zero const-score so BM25 sees
        only the words; the workspace clause is left out when the index holds no other
        workspace (``_only_workspace``), and words alone are not wrapped in a boolean
        query at all (a one-clause boolean costs ~20% of a common word's search).
        Expired, unswept documents are looked up in the term dictionary (a few, or none
        after a gc sweep); bench/tenancy.py and bench/partitions.py have the figures.
        """
        must, must_not = filter_clauses(self.schema, workspace, filters, now)
        if self._only_workspace(searcher, workspace):
            must = must[1:]       # filter_clauses puts the workspace clause first
        expired: tantivy.Query | None = expired_query(self.schema, now)
        unswept = int(searcher.search(expired, 1, count=True).count or 0)
        dropped: set[tuple[int, int]] | None = set()
        if not unswept:
            expired = None
        elif unswept <= POSTFILTER_MAX and addresses:   # (only a page drops them)
            dropped = {(a.segment_ord, a.doc)
                       for _, a in searcher.search(expired, unswept, count=False).hits}
        else:
            dropped = None          # too many to drop after the search
        if text_query is not None and not must and not must_not:
            return _Plan(text_query, expired, dropped)
        clauses = [(tantivy.Occur.Must, tantivy.Query.const_score_query(q, 0.0)) for q in must]
        if text_query is not None:
            clauses.insert(0, (tantivy.Occur.Must, text_query))
        if not clauses:
            # A browse of a one-workspace index without filters: a boolean query with no
            # positive clause matches nothing, so say "everything" explicitly.
            clauses.append((tantivy.Occur.Must, tantivy.Query.all_query()))
        clauses += [(tantivy.Occur.MustNot, q) for q in must_not]
        return _Plan(tantivy.Query.boolean_query(clauses), expired, dropped)

    def _live_count(self, query: tantivy.Query, count: int, plan: _Plan, exact: bool,
                    searcher: tantivy.Searcher) -> int:
        """``count`` (of ``query``, expired documents included) less the expired ones.

        Those ``query`` matches are counted by one more search only when the total is
        shown exactly: beyond the threshold, ``count`` less every expired document is
        already a lower bound past it (reported as ``gte``)."""
        if not plan.dropped or plan.expired is None:
            return count
        if not exact and count - len(plan.dropped) > self.total_threshold:
            return count - len(plan.dropped)
        both = tantivy.Query.boolean_query([(tantivy.Occur.Must, query),
                                            (tantivy.Occur.Must, plan.expired)])
        return count - int(searcher.search(both, 1, count=True).count or 0)

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
        plan = self._plan(workspace, text_query, filters, now, searcher)
        if offset or plan.dropped is None:
            # Deep offset pages, and many unswept documents, keep the MustNot clause:
            # dropping hits after the search would need every hit before the offset.
            plan = _Plan(plan.excluding_expired(), None, set())
        query, dropped = plan.query, plan.dropped or set()

        def run(q: tantivy.Query, **kw: Any) -> tuple[list, int]:
            # Expired documents are dropped from the hits: fetch a few more, and all the
            # ones that could be missing only when the few were not enough (rare).
            fetch = limit + 1 + min(len(dropped), POSTFILTER_SLACK)
            res = searcher.search(q, fetch, count=True, **kw)
            hits = res.hits
            if dropped:
                hits = [h for h in hits if (h[1].segment_ord, h[1].doc) not in dropped]
                if len(hits) <= limit and len(res.hits) == fetch:
                    res = searcher.search(q, limit + 1 + len(dropped), count=True, **kw)
                    hits = [h for h in res.hits
                            if (h[1].segment_ord, h[1].doc) not in dropped]
            return hits, self._live_count(q, int(res.count or 0), plan, exact_total,
                                          searcher)

        if order_by is not None:
            name, ascending = order_by
            found, total = run(query, order_by_field=name, offset=offset,
                               order=tantivy.Order.Asc if ascending else tantivy.Order.Desc)
        elif text_query is None:
            # Browsing: newest first with a keyset cursor (stable under inserts). The
            # first page gets its total from the same pass; later pages are narrowed
            # to older entries, so their count is only a lower bound of the total.
            if before_seq is None:
                found, total = run(query, order_by_field="seq", order=tantivy.Order.Desc)
            else:
                narrowed = tantivy.Query.boolean_query([
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.range_query(
                        self.schema, "seq", tantivy.FieldType.Integer, 0, before_seq - 1))])
                found, total = run(narrowed, order_by_field="seq", order=tantivy.Order.Desc)
                if exact_total or total <= self.total_threshold:
                    total = self._live_count(      # limit 0 panics
                        query, int(searcher.search(query, 1, count=True).count or 0), plan,
                        True, searcher)
        else:
            found, total = run(query, offset=offset)
        found = found[:limit + 1]
        total = max(total, 0)
        matched = total if before_seq is None or exact_total or \
            total <= self.total_threshold else None
        relation = "eq"
        if not exact_total and total > self.total_threshold:
            total, relation = self.total_threshold, "gte"
        hits = []
        generators: dict[str, tantivy.SnippetGenerator] = {}
        for score, address in found[:limit]:
            doc = searcher.doc(address)
            snippet = ""
            if snippets and text_query is not None:
                snippet = self._snippet(searcher, text_query, doc, generators)
            ranked = text_query is not None and order_by is None
            hits.append(Hit(doc["id"][0], float(score) if ranked else 0.0,
                            int(doc["seq"][0]), snippet))
        return HitPage(hits, total, relation, len(found) > limit, matched)

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
               searcher: tantivy.Searcher | None = None, exact: bool = True,
               matched: int | None = None) -> dict[str, Any]:
        """Counts per value of each facet for the same query as ``search``, in one pass.

        Not ``exact`` (no `exact-total`), a query matching more than FACET_SAMPLE_FROM
        documents is counted on a uniform sample and scaled (facets.py); ``matched`` is
        its match count when the caller has it (``HitPage.matched``), else it is counted
        here."""
        if not names:
            return {}
        searcher = searcher or self.searcher(workspace)
        query = self.query(workspace, text_query, filters, now, searcher)
        if not exact and matched is None:
            matched = int(searcher.search(query, 1, count=True).count or 0)
        buckets = None if exact else sample_buckets(matched or 0, self.total_threshold,
                                                    self.facet_sample_docs)
        if buckets is not None:
            query = tantivy.Query.boolean_query([
                (tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.range_query(
                    self.schema, "sample", tantivy.FieldType.Integer, 0, buckets - 1))])
        result = searcher.aggregate(query, aggregation_request(size, names))
        return read_aggregation(result, names, size, matched if buckets is not None else None)

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

    def reload_if_expired(self, now: int) -> bool:
        """Reload a partition whose searcher still shows expired documents: the writer's
        sweep (``SearchIndex.sweep_expired``) does not move the change-log position, so a
        reader in another process would otherwise keep them until the next change."""
        parts = self._live()
        expired = expired_query(self.schema, now)
        stale = [name for name, index in parts.items()
                 if index.searcher().search(expired, 1, count=True).count]
        if stale:
            parts.reload(stale)
        return bool(stale)

    # -- inspection (doctor, health) -----------------------------------------------------
    def doc_ids(self) -> Iterator[tuple[str, int]]:
        """Every (id, seq) in every partition (for doctor)."""
        parts = self._live()
        parts.reload()      # what is committed now, another process's commits included
        for _, index in parts.items():
            searcher = index.searcher()
            n = searcher.num_docs
            if n == 0:
                continue
            result = searcher.search(tantivy.Query.all_query(), n)
            for _, address in result.hits:
                doc = searcher.doc(address)
                yield doc["id"][0], int(doc["seq"][0])

    def count(self) -> int:
        """Documents in every partition."""
        return sum(index.searcher().num_docs for _, index in self._live().items())

    def segments(self) -> int:
        return sum(index.searcher().num_segments for _, index in self._live().items())

    def partitions(self) -> dict[str, int]:
        """Documents per partition ("shared", or the workspace of a dedicated one)."""
        return {name or "shared": index.searcher().num_docs
                for name, index in self._live().items()}

"""The Tantivy index: one writer at a time, following the catalog through its outbox.

Every catalog change to a resource enqueues its id in ``index_outbox`` in the same
transaction. ``sync()`` drains the outbox: it reads the current records, deletes each
id's document by term and re-adds it when the record still exists, commits once, then
acknowledges the rows. Whoever holds the in-process lock drains everything pending, so
concurrent persists share one commit (group commit).

Tantivy allows one writer per directory across processes. The writer is held only for
the duration of a batch, so a CLI command can write while `serve` runs; a writer that
is busy elsewhere is retried, and whatever could not be written stays in the outbox for
the next sync (of this or any other process): never lost, never corrupting.

``<home>/index`` is a symlink to the live ``index-<id>`` directory; a rebuild writes a
new directory, then swaps the link atomically, so searches keep answering meanwhile.
"""
from __future__ import annotations

import html
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import tantivy

from storage.catalog import Catalog
from storage.errors import IndexBusy
from storage.events import emit
from storage.faults import fault

from .facets import DEFAULT_FACET_SIZE, aggregation_request, read_aggregation
from .query import Filters, expired_query, filter_clauses
from .schema import SCHEMA_VERSION, SNIPPET_FIELDS, build_schema, make_document

VERSION_FILE = "SCHEMA_VERSION"
WRITER_HEAP = 50_000_000
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


class SearchIndex:
    #: Exact totals up to here (an attribute so tests can lower it on a real index).
    total_threshold: int = TOTAL_THRESHOLD

    def __init__(self, link: Path, catalog: Catalog, lock_wait: float = 30.0,
                 log: Callable[[str], None] | None = None) -> None:
        self.link = link
        self.catalog = catalog
        self.lock_wait = lock_wait
        self.schema = build_schema()
        self._lock = threading.RLock()
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._target: str | None = None
        self._index: tantivy.Index | None = None
        self.open()

    # -- opening, version check, rebuild -------------------------------------------------
    def _version_ok(self, directory: Path) -> bool:
        try:
            return (directory / VERSION_FILE).read_text().strip() == str(SCHEMA_VERSION)
        except OSError:
            return False

    def open(self) -> None:
        """Open the live index; rebuild from the catalog if missing, stale or corrupt."""
        with self._lock:
            target = os.readlink(self.link) if self.link.is_symlink() else None
            directory = self.link.parent / target if target else None
            reason = None
            if directory is None or not directory.is_dir():
                reason = "missing"
            elif not self._version_ok(directory):
                reason = "schema version changed"
            else:
                try:
                    index = tantivy.Index(self.schema, str(directory), reuse=True)
                    index.searcher()  # touches the meta: a corrupt index fails here
                    self._index, self._target = index, target
                    self._remove_strays()     # left by a reindex that was killed
                    return
                except BaseException as exc:  # noqa: BLE001 - tantivy panics are BaseException
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    reason = f"unreadable ({str(exc)[:120]})"
            if self.link.exists() and not self.link.is_symlink():
                # An old plain directory at the link path: move it aside first.
                shutil.rmtree(self.link, ignore_errors=True)
            if reason != "missing" or self.catalog.count():
                # A fresh data home builds its empty index silently (clean stderr).
                self._log(f"search index {reason}: rebuilding from the catalog")
            self.rebuild()

    def _current(self) -> tantivy.Index:
        """The live index, reopened if another process swapped the link."""
        try:
            target = os.readlink(self.link)
        except OSError:
            target = None
        if target is not None and target == self._target and \
                not os.path.exists(os.path.join(self.link.parent, target, "meta.json")):
            # The live directory was deleted under us (an operator, a cleanup script):
            # without this, writes would go unindexed until a restart while health said
            # ok. Rebuild from the catalog now; it holds every record and its text.
            self._log("search index directory is gone: rebuilding from the catalog")
            self._index = None
            self._target = None
            target = None
        if target != self._target or self._index is None:
            with self._lock:
                try:
                    target = os.readlink(self.link)
                except OSError:
                    target = None
                if target != self._target or self._index is None:
                    self.open()
        assert self._index is not None
        return self._index

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build a fresh index from the catalog in a new directory and swap it in."""
        with self._lock:
            new_name = f"index-{uuid.uuid4().hex[:12]}"
            new_dir = self.link.parent / new_name
            new_dir.mkdir(parents=True)
            index = tantivy.Index(self.schema, str(new_dir))
            writer = index.writer(WRITER_HEAP, 1)
            total = self.catalog.count()
            done = 0
            batch: list = []
            for res in self.catalog.iter_resources():
                batch.append(res)
                if len(batch) >= 1000:
                    done += self._add_batch(writer, batch)
                    batch = []
                    if progress:
                        progress(done, total)
            done += self._add_batch(writer, batch)
            if progress:
                progress(done, total)
            writer.commit()
            writer.wait_merging_threads()
            (new_dir / VERSION_FILE).write_text(str(SCHEMA_VERSION))
            tmp_link = self.link.parent / f".index-link-{uuid.uuid4().hex[:8]}"
            os.symlink(new_name, tmp_link)
            old = os.readlink(self.link) if self.link.is_symlink() else None
            os.replace(tmp_link, self.link)
            index.reload()
            self._index, self._target = index, new_name
            if old and old != new_name:
                # Open searchers keep their mmaps; the files go when the last one closes.
                shutil.rmtree(self.link.parent / old, ignore_errors=True)
            self._remove_strays()
            return done

    def _remove_strays(self) -> None:
        for p in self.link.parent.glob("index-*"):
            if p.name != self._target and p.is_dir():
                # A stray from an interrupted rebuild (older than a minute): remove it.
                if time.time() - p.stat().st_mtime > 60:
                    shutil.rmtree(p, ignore_errors=True)

    def _add_batch(self, writer, batch: list) -> int:
        if not batch:
            return 0
        texts = self.catalog.extract_texts([r.id for r in batch])
        for res in batch:
            writer.add_document(make_document(res, texts.get(res.id, "")))
        return len(batch)

    # -- writing -------------------------------------------------------------------------
    def _writer(self, index: tantivy.Index, wait: float):
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                return index.writer(WRITER_HEAP, 1)
            except ValueError as exc:
                if "LockBusy" not in str(exc) and "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        "the search index is being written by another process; the change "
                        "is saved in the catalog and will be indexed by the next writer "
                        "(or point the CLI at the server with RESOURCES_API_URL)") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def sync(self, wait: float | None = None) -> int:
        """Apply every pending outbox row; returns how many documents were touched."""
        wait = self.lock_wait if wait is None else wait
        with self._lock:
            index = self._current()
            applied = 0
            while True:
                rows = self.catalog.pending_index()
                if not rows:
                    return applied
                ids = list(dict.fromkeys(rid for _, rid in rows))
                records = self.catalog.get_many(ids)
                texts = self.catalog.extract_texts([i for i in ids if i in records])
                writer = self._writer(index, wait)
                started = time.monotonic()
                try:
                    for id_ in ids:
                        writer.delete_documents_by_term("id", id_)
                        res = records.get(id_)
                        if res is not None:
                            writer.add_document(make_document(res, texts.get(id_, "")))
                    fault("index.before_commit")
                    writer.commit()
                    fault("index.after_commit")
                    # Consuming the writer waits for merges (bounded segment count) and
                    # releases the directory lock for other processes.
                    writer.wait_merging_threads()
                except BaseException:
                    try:
                        writer.rollback()
                    except BaseException:
                        pass
                    raise
                self.catalog.ack_index([row_id for row_id, _ in rows])
                index.reload()
                applied += len(ids)
                emit("index.commit", documents=len(ids), seconds=time.monotonic() - started)

    def try_sync(self) -> None:
        """Sync, but a busy writer elsewhere is only a note: the outbox keeps the work."""
        try:
            self.sync()
        except IndexBusy as exc:
            self._log(f"note: {exc.message}")
        except (OSError, ValueError) as exc:
            # The record is durable and acknowledged; the outbox keeps the index work
            # (a full disk under the index must not turn a done write into a 500).
            self._log(f"index catch-up failed, will retry: {str(exc)[:200]}")

    # -- reading -------------------------------------------------------------------------
    def searcher(self) -> tantivy.Searcher:
        return self._current().searcher()

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
        searcher = searcher or self._current().searcher()
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

    def facets(self, workspace: str, text_query: tantivy.Query | None, filters: Filters,
               now: int, names: list[str], size: int = DEFAULT_FACET_SIZE,
               searcher: tantivy.Searcher | None = None) -> dict[str, Any]:
        """Counts per value of each facet for the same query as ``search``, in one pass."""
        if not names:
            return {}
        searcher = searcher or self._current().searcher()
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

    def doc_ids(self) -> Iterator[tuple[str, int]]:
        """Every (id, seq) in the index (for doctor)."""
        index = self._current()
        index.reload()      # what is committed now, another process's commits included
        searcher = index.searcher()
        n = searcher.num_docs
        if n == 0:
            return
        result = searcher.search(tantivy.Query.all_query(), n)
        for _, address in result.hits:
            doc = searcher.doc(address)
            yield doc["id"][0], int(doc["seq"][0])

    def count(self) -> int:
        return self.searcher().num_docs

"""How semantic candidates are ranked: the best documents that pass the filters, exact
when the filters are selective; reciprocal rank fusion for hybrid; and hybrid's lexical
side. Used by search_api/meaning.py through indexer.semantic."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .semantic import SemanticIndex

#: Reciprocal rank fusion's k (the usual 60) and how deep each list of a hybrid goes.
RRF_K = 60
HYBRID_DEPTH = 50
#: Up to this many filter-selected documents are scanned exactly instead of searched.
EXACT_SCAN_MAX = 2_000


def _best_per_doc(chunks: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    seen: set[str] = set()
    out = []
    for id_, key, sim in chunks:
        if id_ not in seen:
            seen.add(id_)
            out.append((id_, key, sim))
    return out


def rank(sem: "SemanticIndex", qvec: np.ndarray, workspace: str, want: int,
         allowed_count: int, allowed_all: Callable[[], list[str]],
         allowed_among: Callable[[list[str]], set[str]]) -> list[tuple[str, int, float]]:
    """The ``want`` best documents (id, best chunk key, similarity) that pass the filters.

    ``allowed_count`` is how many documents the filters select; when few, their vectors
    are scanned exactly (``allowed_all`` lists them). Otherwise the nearest chunks are
    fetched, kept when ``allowed_among`` says their document passes, and the fetch grows
    (x4) until ``want`` documents pass or every chunk of the workspace was looked at
    (then exactly)."""
    if allowed_count == 0 or want <= 0:
        return []
    total = sem.size(workspace)
    if total == 0:
        return []           # nothing embedded in this workspace yet
    if allowed_count <= EXACT_SCAN_MAX and allowed_count * 4 < total:
        return sem.scan(allowed_all(), qvec)
    # a filter passing a share s of the workspace needs ~1/s times the chunks
    share = max(allowed_count / max(total, 1), 1e-3)
    count = min(max(int(want * 2 / min(share, 1.0)), 64), total)
    while True:
        exact = count >= total // 2
        if exact:
            count = total
        docs = _best_per_doc(sem.nearest_chunks(workspace, qvec, count, exact=exact))
        ok = allowed_among([d[0] for d in docs])
        passed = [d for d in docs if d[0] in ok]
        if len(passed) >= want or count >= total:
            return passed[:want]
        count = min(count * 4, total)


def rrf(lists: list[list[str]], k: int = 60, weights: list[float] | None = None
        ) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1.
    Ties go to the document ranked higher in the first list (the lexical one)."""
    weights = weights or [1.0] * len(lists)
    scores: dict[str, float] = {}
    first: dict[str, int] = {}
    for w, ids in zip(weights, lists):
        for rank_, id_ in enumerate(ids, start=1):
            scores[id_] = scores.get(id_, 0.0) + w / (k + rank_)
    for rank_, id_ in enumerate(lists[0] if lists else []):
        first.setdefault(id_, rank_)
    big = 1 << 30
    return sorted(scores.items(), key=lambda kv: (-kv[1], first.get(kv[0], big)))


#: English function words left out of hybrid's lexical side.
STOP_WORDS = frozenset("""a an and are as at be been but by can did do does for from had has
have how i if in into is it its me my no not of on or our so than that the their them
then there these they this to up was we were what when where which who why will with
you your""".split())
_SYNTAX = re.compile(r'["():+\-*^~]|\b(AND|OR|NOT)\b')


def lexical_side(index, q: str, text_query, keyword_mode: str):
    """The BM25 query of a hybrid search: the precise half. Query syntax is kept as
    typed; plain words must all match, stop words left out (None: no word left).

    Why not the caller's keyword-mode any/balanced: fusion rewards a document for being
    in both lists, so a BM25 list of documents sharing one incidental word (or "the")
    with a paraphrase outranks the document the vectors put first. Measured on the
    bench's paraphrase set: nDCG@10 0.61 with balanced and stop words, 0.81 without
    stop words, equal to semantic with every word required (bench/RESULTS.md, 7)."""
    if _SYNTAX.search(q):
        return text_query
    from .query import parse_text
    words = [w for w in q.split() if w.lower().strip(".,;!?") not in STOP_WORDS]
    return parse_text(index, " ".join(words), "all") if words else None

"""Figure 1: search latency (p50/p95/p99) per query shape, in-process and over HTTP,
against a SQLite FTS5 index of the same documents (``bench.fts5_baseline``).

In-process means ``service.search`` / ``service.list`` (records fetched from the catalog,
snippets made, exactly what the HTTP route calls). HTTP means a real uvicorn serving
``create_app(service=...)`` in a subprocess (``bench.server``) and one keep-alive httpx
client. Every shape queries the main workspace (60% of the corpus) with limit 20.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import log, measure, summarize
from .corpus import MAIN_WS, PHRASE, QUERY_WORDS, rare_word, slot_root


@dataclass
class Shape:
    key: str
    label: str
    q: str | None                       # None: a list (newest first)
    match: str | None                   # the FTS5 translation of q
    params: dict[str, Any] = field(default_factory=dict)
    page: int = 1


def shapes() -> list[Shape]:
    w = QUERY_WORDS
    root = slot_root(MAIN_WS, "archive")
    rare = rare_word()
    phrase = " ".join(PHRASE)
    return [
        Shape("common_word", f"one common word ({w['common']})", w["common"], w["common"]),
        Shape("rare_word", f"one rare word ({rare})", rare, rare),
        Shape("phrase", f'phrase "{phrase}"', f'"{phrase}"', f'"{phrase}"'),
        Shape("two_words_or", f"{w['or_a']} OR {w['or_b']}", f"{w['or_a']} OR {w['or_b']}",
              f"{w['or_a']} OR {w['or_b']}"),
        Shape("word_root_prefix", f"{w['filtered']} + storage-root + path-prefix",
              w["filtered"], w["filtered"],
              {"storage-root": root, "path-prefix": "exports/2026"}),
        Shape("filters_only", "filters only (root + prefix + type)", None, None,
              {"storage-root": root, "path-prefix": "exports/2026", "type": "file"}),
        Shape("accept_image", "accept=image/* (list)", None, None, {"accept": "image/*"}),
        Shape("field_value", f"field:value (tags:{w['field_tag']})", f"tags:{w['field_tag']}",
              f"tags:{w['field_tag']}"),
        Shape("page5_cursor", f"page 5 through a cursor ({w['common']})", w["common"],
              w["common"], page=5),
        # The same search as common_word plus meta.facets of all 7 fields (one
        # aggregation); the FTS5 column is only the plain search (no facets there).
        Shape("facets_all", f"{w['common']} + facets=all (7 fields)", w["common"], w["common"],
              {"facets": "all"}),
    ]


def _inproc_cursor(svc, shape: Shape) -> str | None:
    cursor = None
    for _ in range(shape.page - 1):
        page = svc.search(MAIN_WS, shape.q, shape.params, 20, cursor)
        cursor = page.next_cursor
        if cursor is None:
            break
    return cursor


def _http_cursor(client, shape: Shape) -> str | None:
    cursor = None
    for _ in range(shape.page - 1):
        path, kwargs = _http_request(shape, cursor)
        r = client.get(path, **kwargs)
        r.raise_for_status()
        cursor = r.json()["meta"]["next-cursor"]
        if cursor is None:
            break
    return cursor


def _http_request(shape: Shape, cursor: str | None) -> tuple[str, dict[str, Any]]:
    params = dict(shape.params, limit=20)
    if cursor:
        params["cursor"] = cursor
    if shape.q is None:
        return f"/v1/{MAIN_WS}/resources", {"params": params}
    params["q"] = shape.q
    return f"/v1/{MAIN_WS}/resources/search", {"params": params}


def http_requests(shape_list: list[Shape] | None = None) -> list[tuple[str, dict]]:
    """(path, httpx kwargs) of every first-page shape, for the load figure."""
    # The load mix stays the search shapes of earlier runs (facets are the web view's).
    return [_http_request(s, None) for s in (shape_list or shapes())
            if s.page == 1 and "facets" not in s.params]


def bare_call(svc, shape: Shape, now: int):
    """The bare yardstick of ``shape`` (module docstring), or None without a partition
    of the workspace's own."""
    import tantivy

    from indexer.partitions import SHARED
    from indexer.query import Filters, filter_clauses, parse_text
    if svc.index._live().route(MAIN_WS) == SHARED:
        return None
    index = svc.index._current(MAIN_WS)
    searcher = index.searcher()
    params = {k: v for k, v in shape.params.items() if k != "facets"}
    words = parse_text(index, shape.q or "")
    extra = filter_clauses(index.schema, MAIN_WS, Filters.from_params(params), now)[0][1:]
    clauses = [(tantivy.Occur.Must, tantivy.Query.const_score_query(e, 0.0)) for e in extra]
    if words is not None:
        clauses.insert(0, (tantivy.Occur.Must, words))
    query = (words if len(clauses) == 1 and words is not None else
             tantivy.Query.boolean_query(clauses or [(tantivy.Occur.Must,
                                                      tantivy.Query.all_query())]))
    offset = (shape.page - 1) * 20
    if shape.q is None:        # a list: newest first
        return lambda: searcher.search(query, 21, count=False, order_by_field="seq",
                                       order=tantivy.Order.Desc)
    return lambda: searcher.search(query, 21, count=False, offset=offset)


def run(svc, fts, server_url: str | None, api_key: str | None, iters: int,
        http_iters: int, budget_s: float) -> dict[str, Any]:
    import httpx

    now = int(svc.now())
    out: dict[str, Any] = {}
    client = None
    if server_url:
        client = httpx.Client(base_url=server_url, timeout=60,
                              headers={"Authorization": f"Bearer {api_key}"})
    try:
        for shape in shapes():
            cursor = _inproc_cursor(svc, shape)
            first = svc.search(MAIN_WS, shape.q, shape.params, 20, cursor)

            def inproc(shape=shape, cursor=cursor):
                return svc.search(MAIN_WS, shape.q, shape.params, 20, cursor)

            offset = (shape.page - 1) * 20

            def baseline(shape=shape, offset=offset):
                return fts.query(MAIN_WS, shape.match, shape.params, now, 20, offset)

            ids, fts_total = baseline()
            row: dict[str, Any] = {"label": shape.label, "total": first.total,
                                   "fts5_total": fts_total, "hits": len(first.items),
                                   "fts5_hits": len(ids)}
            row["inproc"] = summarize(measure(inproc, iters, budget_s))
            bare = bare_call(svc, shape, now)
            row["bare"] = summarize(measure(bare, iters, budget_s)) if bare else None
            row["vs_bare"] = (row["inproc"]["p50_ms"] / row["bare"]["p50_ms"]
                              if bare and "facets" not in shape.params else None)
            row["fts5"] = summarize(measure(baseline, iters, budget_s))
            if client is not None:
                hcursor = _http_cursor(client, shape)
                path, kwargs = _http_request(shape, hcursor)

                def http(path=path, kwargs=kwargs):
                    r = client.get(path, **kwargs)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path} -> {r.status_code}: {r.text[:200]}")
                    return r

                row["http"] = summarize(measure(http, http_iters, budget_s))
            else:
                row["http"] = None
            f50 = row["fts5"]["p50_ms"]
            row["speedup_p50"] = f50 / row["inproc"]["p50_ms"]
            row["http_speedup_p50"] = (f50 / row["http"]["p50_ms"]) if row["http"] else None
            out[shape.key] = row
            log(f"  {shape.label:<42} total {first.total:>8,}  in-process p50 "
                f"{row['inproc']['p50_ms']:7.2f} ms  http p50 "
                f"{(row['http'] or {}).get('p50_ms', float('nan')):7.2f} ms  fts5 p50 "
                f"{f50:8.2f} ms  ({row['speedup_p50']:.2f}x)")
    finally:
        if client is not None:
            client.close()
    return out

"""Facet counts of a search in one pass: one Tantivy terms aggregation over fast fields.

The web view used to run one counting search per facet value (up to ~105 per page);
here every requested facet is a ``terms`` sub-aggregation of a single
``searcher.aggregate(query, ...)`` call over the same query as the search (text, filters,
workspace, expiry), so the counts always agree with the search's total.

Counts are per document: a resource with two tags counts once in each tag's bucket.
``missing`` is the number of matching documents without a value for that field (no
storage root, no slot, ...; null for tags). Buckets are the ``size`` largest, by count;
``other`` says how many documents with a value were left out, and ``exact`` is false
when Tantivy reports a possible error in the counts shown (a field with more distinct
values than it keeps per segment: 10 x size).

**Broad queries are counted on a sample.** Aggregating every match costs ~70 ns per
document here (7 fields; a multi-valued tag field and optional fields cost most), so a
word matching 441,000 documents of a workspace took 30 ms while its search took 6
(bench/RESULTS.md, figure 1 at 1M). Like the total, which is exact only up to 10,000
unless the caller asks ``exact-total``, facet counts are exact up to FACET_SAMPLE_FROM
matches; beyond, the aggregation runs on the documents of the first few of 1,024 sample
buckets (a CRC-32 of the id, schema.py: a uniform sample of about FACET_SAMPLE_DOCS of
the matches, found through the term dictionary) and every count is scaled by matches /
sampled (Elasticsearch's ``random_sampler`` aggregation does the same). Such facets say
``exact: false`` and ``sample: N`` (the documents counted); ``exact-total=true`` gets
exact counts of every match.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from storage.errors import InvalidSpec

from .schema import SAMPLE_BUCKETS

#: Facet name (the API's kebab-case spelling, also its filter parameter) -> index field.
#: Every field here is a raw-tokenized *fast* field in schema.py.
FACET_FIELDS: dict[str, str] = {
    "type": "type", "tier": "tier", "storage-root": "storage_root", "slot": "slot",
    "content-major": "content_major", "tag": "tag", "workflow-id": "workflow_id",
}
DEFAULT_FACET_SIZE = 20
#: Facets are counted exactly up to this many matching documents (the index's total
#: threshold, reader.py, which the service passes).
FACET_SAMPLE_FROM = 10_000
#: Beyond, on a sample of about this many of them.
FACET_SAMPLE_DOCS = 10_000
MAX_FACET_SIZE = 200
#: Fields with at most one value per document: their "no value" count is the remainder.
#: (type is always set and single-valued, so its buckets add up to the match count.)
SINGLE_VALUED = ("type", "tier", "storage-root", "slot", "content-major", "workflow-id")


def parse_facets(value: Any) -> list[str]:
    """``facets=type,tier`` / ``facets=all`` (or ``*``) -> facet names, in a stable order."""
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    names: list[str] = []
    for item in items:
        names.extend(p.strip() for p in str(item).split(",") if p.strip())
    if any(n in ("all", "*") for n in names):
        return list(FACET_FIELDS)
    unknown = [n for n in names if n not in FACET_FIELDS]
    if unknown:
        raise InvalidSpec(f"unknown facet {unknown[0]!r} (known: {', '.join(FACET_FIELDS)}, all)")
    return [n for n in FACET_FIELDS if n in names]


def parse_facet_size(value: Any) -> int:
    if value in (None, ""):
        return DEFAULT_FACET_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"facet-size must be an integer, not {value!r}") from None
    if not 1 <= size <= MAX_FACET_SIZE:
        raise InvalidSpec(f"facet-size must be between 1 and {MAX_FACET_SIZE}")
    return size


def aggregation_request(size: int = DEFAULT_FACET_SIZE,
                        names: Iterable[str] | None = None) -> dict[str, Any]:
    """The aggregation JSON: one terms aggregation per facet, all in one request.

    ``type`` is always counted (two values): its buckets add up to the number of
    matches, which gives the "no value" count of the other single-valued fields.
    Tantivy's ``missing`` option would give it directly but costs ~60% more per
    request, and so does a larger ``segment_size`` (bench/tenancy.py, figure 6)."""
    wanted = ["type", *(n for n in (names or FACET_FIELDS) if n != "type")]
    return {name: {"terms": {"field": FACET_FIELDS[name],
                             "size": 2 if name == "type" else size}}
            for name in wanted}


def sample_buckets(matched: int, exact_up_to: int = FACET_SAMPLE_FROM,
                   sample_docs: int = FACET_SAMPLE_DOCS) -> int | None:
    """How many sample buckets (of SAMPLE_BUCKETS) to count for a query matching
    ``matched`` documents; None: count them all."""
    if matched <= exact_up_to:
        return None
    return min(SAMPLE_BUCKETS, math.ceil(SAMPLE_BUCKETS * sample_docs / matched))


def read_aggregation(result: dict[str, Any], names: Iterable[str],
                     size: int = DEFAULT_FACET_SIZE,
                     matched: int | None = None) -> dict[str, Any]:
    """Tantivy's answer -> ``{name: {buckets, missing, other, exact}}``.

    ``missing`` is null for tags (several per document: no remainder to take). With
    ``matched`` (the aggregation ran on a sample of that many matches), every count is
    scaled by matched / sampled and the facet says ``exact: false, sample: sampled``."""
    sampled = sum(int(b["doc_count"]) for b in (result.get("type") or {}).get("buckets", []))
    scale = matched / sampled if matched is not None and sampled else 1.0

    def est(n: int) -> int:
        return round(n * scale)
    out: dict[str, Any] = {}
    for name in names:
        agg = result.get(name) or {}
        raw = [(str(b["key"]), int(b["doc_count"])) for b in agg.get("buckets", [])][:size]
        raw_other = int(agg.get("sum_other_doc_count") or 0)
        missing = None
        if name in SINGLE_VALUED:
            missing = est(max(0, sampled - raw_other - sum(c for _, c in raw)))
        out[name] = {"buckets": [{"value": v, "count": est(c)} for v, c in raw],
                     "missing": missing, "other": est(raw_other),
                     "exact": matched is None and
                     int(agg.get("doc_count_error_upper_bound") or 0) == 0}
        if matched is not None:
            out[name]["sample"] = sampled
    return out

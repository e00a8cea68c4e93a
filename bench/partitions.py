"""Figure 7: index partitions (`python -m bench.partitions --size 200000`).

Builds (once, cached under bench/.data/partitions-N) from the first N corpus documents
(bench/tenancy.py's records: the service's schema and ``make_document``, no catalog):

- ``single``: one index with every workspace (the layout before partitions);
- ``parts/``: the partitioned layout, routed by ``PartitionPolicy().plan`` (the
  service's defaults) exactly as ``SearchIndex.rebuild`` does;
- ``alone-<ws>``: the small workspace's documents alone (its yardstick; a dedicated
  partition is its own yardstick).

Ingest: documents per second and bytes on disk of each layout (the same documents,
built one after the other in this run). Queries, per shape and for a big (dedicated)
and a small (shared) workspace, timed round-robin: ``before`` is the service's read
path (``IndexReader.search``: filters, expiry, counted total) on ``single``; ``after``
the same on the workspace's partition, which is what the service does now; ``bare`` is
the words alone on only that workspace's documents (the issue's yardstick).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import tantivy

from indexer.partitions import SHARED, PartitionPolicy, Partitions
from indexer.query import Filters, expired_query, filter_clauses
from indexer.reader import TOTAL_THRESHOLD, IndexReader
from indexer.schema import SCHEMA_VERSION, TEXT_FIELDS, build_schema, make_document

from . import corpus
from .common import DEFAULT_DATA, REPO, log, summarize
from .tenancy import NOW, interleaved, resource

HEAP = 50_000_000        # the service's WRITER_HEAP
SMALL_WS = "ws-umbrella"


class _Reader(IndexReader):
    """The service's read path over a given searcher (no catalog, no snippets)."""
    total_threshold = TOTAL_THRESHOLD

    def __init__(self, schema: tantivy.Schema) -> None:
        self.schema = schema


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(directory: Path, size: int, min_docs: int) -> dict[str, Any]:
    schema = build_schema()
    done = directory / "DONE"
    if done.exists():
        meta = json.loads(done.read_text())
        if (meta.get("size"), meta.get("schema"), meta.get("min_docs")) == \
                (size, SCHEMA_VERSION, min_docs):
            return meta
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # Both layouts are fed in the same loop, each timed on its own (make_document, add,
    # commit): the same documents, interleaved, so a busy neighbour slows both alike.
    counts: dict[str, int] = {}
    for i in range(size):
        ws = corpus.document(i, max_bytes=1).workspace
        counts[ws] = counts.get(ws, 0) + 1
    dedicated = PartitionPolicy(min_docs=min_docs).plan(counts)
    meta: dict[str, Any] = {"size": size, "schema": SCHEMA_VERSION, "counts": counts,
                            "min_docs": min_docs}
    (directory / "single").mkdir()
    single = tantivy.Index(schema, str(directory / "single"))
    (directory / "parts").mkdir()
    parts = Partitions.create(directory / "parts", schema, dedicated)
    (directory / f"alone-{SMALL_WS}").mkdir()
    alone = tantivy.Index(schema, str(directory / f"alone-{SMALL_WS}"))
    w_single = single.writer(HEAP, 1)
    writers = {n: i.writer(HEAP, 1) for n, i in parts.items()}
    w_alone = alone.writer(HEAP, 1)
    spent = {"single": 0.0, "parts": 0.0}
    for i in range(size):
        res, text = resource(i)
        t0 = time.perf_counter()
        w_single.add_document(make_document(res, text))
        t1 = time.perf_counter()
        writers[parts.route(res.workspace)].add_document(make_document(res, text))
        t2 = time.perf_counter()
        spent["single"] += t1 - t0
        spent["parts"] += t2 - t1
        if res.workspace == SMALL_WS:
            w_alone.add_document(make_document(res, text))
        if i and i % 50_000 == 0:
            log(f"  fed {i:,}")
    t0 = time.perf_counter()
    w_single.commit()
    w_single.wait_merging_threads()
    t1 = time.perf_counter()
    for w in writers.values():
        w.commit()
        w.wait_merging_threads()
    t2 = time.perf_counter()
    spent["single"] += t1 - t0
    spent["parts"] += t2 - t1
    w_alone.commit()
    w_alone.wait_merging_threads()
    meta["single"] = {"seconds": spent["single"], "bytes": _du(directory / "single")}
    meta["parts"] = {"seconds": spent["parts"], "bytes": _du(directory / "parts"),
                     "dedicated": dedicated}
    for label in ("single", "parts"):
        meta[label]["docs_per_s"] = size / meta[label]["seconds"]
        log(f"  {label}: {meta[label]['seconds']:.1f} s, {meta[label]['docs_per_s']:,.0f} "
            f"docs/s, {meta[label]['bytes'] / 1e6:,.1f} MB")
    done.write_text(json.dumps(meta))
    return meta


def run(size: int, iters: int, budget_s: float, data: Path,
        min_docs: int = PartitionPolicy.min_docs) -> dict[str, Any]:
    schema = build_schema()
    directory = data / f"partitions-{size}"
    log(f"partitions: building/reusing {size:,} documents under {directory}")
    meta = build(directory, size, min_docs)
    assert corpus.MAIN_WS in meta["parts"]["dedicated"], "raise --size or lower --min-docs"
    single = tantivy.Index(schema, str(directory / "single"), reuse=True)
    parts = Partitions.open(directory / "parts", schema)
    swept = _swept_copy(directory, schema)
    reader = _Reader(schema)
    fields = list(TEXT_FIELDS)
    w = corpus.QUERY_WORDS
    out: dict[str, Any] = {"size": size, "build": meta, "workspaces": {}}
    for ws in (corpus.MAIN_WS, SMALL_WS):
        part_name = parts.route(ws)
        alone = parts.index(part_name) if part_name != SHARED else \
            tantivy.Index(schema, str(directory / f"alone-{ws}"), reuse=True)
        searchers = {"before": single.searcher(), "after": parts.for_workspace(ws).searcher(),
                     "swept": swept.for_workspace(ws).searcher(), "bare": alone.searcher()}
        root = corpus.slot_root(ws, "archive")
        shapes = {
            "common_word": (w["common"], Filters()),
            "phrase": ('"' + " ".join(corpus.PHRASE) + '"', Filters()),
            "two_words_or": (f"{w['or_a']} OR {w['or_b']}", Filters()),
            "word_root_prefix": (w["filtered"], Filters(storage_root=root,
                                                        path_prefix="exports/2026")),
        }
        rows: dict[str, Any] = {}
        for key, (q, f) in shapes.items():
            text = single.parse_query(q, fields, field_boosts=dict(TEXT_FIELDS))
            extra = filter_clauses(schema, ws, f, NOW)[0][1:]
            bare = text if not extra else tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, text),
                 *[(tantivy.Occur.Must, tantivy.Query.const_score_query(e, 0.0))
                   for e in extra]])
            calls = {
                name: (lambda s=searchers[name]: reader.search(
                    ws, text, f, NOW, 20, snippets=False, exact_total=False, searcher=s))
                for name in ("before", "after", "swept")}
            # The same query without loading the page's 20 stored documents: what the
            # workspace clause (or its absence) costs, next to the bare words.
            # (expired documents are dropped after the search, as the service does).
            calls["after-query"] = lambda s=searchers["after"], text=text, f=f: s.search(
                reader._plan(ws, text, f, NOW, s).query, 21, count=True)
            calls["bare"] = lambda s=searchers["bare"]: s.search(bare, 21, count=False)
            row: dict[str, Any] = {"q": q, "total_before": calls["before"]().total,
                                   "total_after": calls["after"]().total}
            for name, samples in interleaved(calls, iters, budget_s).items():
                row[name] = summarize(samples)
            base = row["bare"]["p50_ms"]
            for name in ("before", "after", "swept", "after-query"):
                row[name]["vs_bare"] = row[name]["p50_ms"] / base
                row[name]["p99_vs_p50"] = row[name]["p99_ms"] / row[name]["p50_ms"]
            rows[key] = row
            log(f"  {ws} {key:<17} before {row['before']['p50_ms']:.2f} after "
                f"{row['after']['p50_ms']:.2f} swept {row['swept']['p50_ms']:.2f} "
                f"bare {base:.2f} ms")
        out["workspaces"][ws] = {"partition": part_name or "shared",
                                 "documents": meta["counts"].get(ws, 0), "shapes": rows}
    return out


LABELS = {"before": "before: service search, single index",
          "after": "**after**: service search, the workspace's partition (1 in 200 expired, "
                   "not yet swept)",
          "swept": "**after, swept**: the same once the index writer deleted the expired "
                   "documents (it does every 5 s)",
          "after-query": "after, the query and count only (no page load, expired documents not "
                         "left out)"}


def _swept_copy(directory: Path, schema: tantivy.Schema) -> Partitions:
    """``parts-swept``: the partitioned layout after the index writer's expiry sweep
    (``SearchIndex.sweep_expired``: delete the expired documents, commit). A hard-linked
    copy: Tantivy never rewrites a file, so the sweep's new files leave ``parts`` as it was."""
    target = directory / "parts-swept"
    if not (target / "SWEPT").exists():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(directory / "parts", target, copy_function=os.link)
        parts = Partitions.open(target, schema)
        for _, index in parts.items():
            writer = index.writer(HEAP, 1)
            writer.delete_documents_by_query(expired_query(schema, NOW))
            writer.commit()
            writer.wait_merging_threads()
        (target / "SWEPT").write_text("1")
    parts = Partitions.open(target, schema)
    parts.reload()
    return parts


def render(out: dict[str, Any]) -> str:
    b = out["build"]
    lines = ["<!-- bench:partitions:start -->",
             "## 8. Index partitions (`python -m bench.partitions`)", "",
             f"- Run: {out.get('started', '?')}, code {out.get('git') or '?'}; load average "
             f"at start {out.get('load_start', '?')}, at end {out.get('load_end', '?')} "
             "(2 shared cores: read ratios, not absolute values).",
             f"- {out['size']:,} corpus documents, per workspace {b['counts']}; policy "
             f"(>= {b['min_docs']:,} resources: own partition) gave dedicated partitions "
             f"{b['parts']['dedicated']}, the rest share one.",
             f"- Ingest (make_document, add, commit; both layouts fed the same documents "
             f"in one loop, timed apart): single index "
             f"{b['single']['docs_per_s']:,.0f} docs/s, {b['single']['bytes'] / 1e6:,.1f} MB; "
             f"partitioned {b['parts']['docs_per_s']:,.0f} docs/s "
             f"({b['single']['seconds'] / b['parts']['seconds']:.2f}× the rate), "
             f"{b['parts']['bytes'] / 1e6:,.1f} MB "
             f"({b['parts']['bytes'] / b['single']['bytes']:.2f}× the size).",
             "- p50 (p99) in ms; ratio of p50 to the bare words on the workspace's documents "
             "alone. before: the service's query on the single index; after: on the "
             "workspace's partition (what the service does now).", ""]
    for ws, wsout in out["workspaces"].items():
        shapes = wsout["shapes"]
        keys = list(shapes)
        lines += [f"**{ws}** ({wsout['documents']:,} documents, partition "
                  f"`{wsout['partition']}`)", "",
                  "| variant | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name in ("before", "after", "swept", "after-query"):
            lines.append(f"| {LABELS[name]} | " + " | ".join(
                f"{shapes[k][name]['p50_ms']:.2f} ({shapes[k][name]['p99_ms']:.2f}) "
                f"**{shapes[k][name]['vs_bare']:.2f}×**" for k in keys) + " |")
        lines.append("| bare words, workspace alone | " + " | ".join(
            f"{shapes[k]['bare']['p50_ms']:.2f} ({shapes[k]['bare']['p99_ms']:.2f})"
            for k in keys) + " |")
        lines.append("| after vs before | " + " | ".join(
            f"{shapes[k]['after']['p50_ms'] / shapes[k]['before']['p50_ms']:.2f}×"
            for k in keys) + " |")
        lines.append("| total (before = after) | " + " | ".join(
            f"{shapes[k]['total_before']:,} = {shapes[k]['total_after']:,}" for k in keys)
            + " |")
        lines.append("")
    lines.append("<!-- bench:partitions:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from . import report
    ap = argparse.ArgumentParser(prog="python -m bench.partitions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per variant at most")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--min-docs", type=int, default=PartitionPolicy.min_docs,
                    help="own partition from this many documents (the service's default)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    raw = data / f"partitions-{args.size}.json"
    if args.render_only:
        result = json.loads(raw.read_text())
    else:
        started, load_start = report.now_iso(), report.loadavg()
        result = run(args.size, args.iters, args.budget, data, args.min_docs)
        result.update(started=started, load_start=load_start, load_end=report.loadavg(),
                      git=report.git_short(REPO))
        raw.write_text(json.dumps(result, indent=2))
    report.write_marked_section(Path(args.results), "partitions", render(result))


if __name__ == "__main__":
    main()

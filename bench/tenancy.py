"""Figure 6: what a query pays for tenancy, expiry and the total, and facets in one pass,
measured straight on Tantivy (`python -m bench.tenancy --size 200000`).

Builds (once, cached under bench/.data/tenancy-N) two indexes of the first N corpus
documents with the service's schema and ``make_document`` (no blobs, no catalog):
``shared`` holds every workspace (what the service has), ``part`` only the main
workspace's documents (a partition per big workspace). The schema gets one extra field,
the old expiry field (indexed *and* fast), so the old query runs on the same index.

Per query shape, p50/p99 of these variants, timed round-robin in the same process and
run, each as a ratio to ``bare-part`` (the same words on only that workspace's documents,
the issue's yardstick):

- ``before``: the query of schema v3: text AND const(workspace AND live range on the
  fast expiry field), total counted; ``before-nocount``: the same, count=False;
- ``flat-fastexpiry``: flat const-score workspace clause, expiry as a MustNot of the
  expired range, still on the fast field;
- ``after``: the service's query now (``SearchIndex.query``: flat clauses, MustNot of the
  expired range answered by the term dictionary); ``after-nocount``: count=False;
  ``after-swept``: the same when no document is expired (the service then leaves the
  clause out);
- ``partition``: the same query on the partition, without the workspace clause;
- ``bare-shared`` / ``bare-part``: the words alone on each index.

Facets: one aggregation of the 7 facet fields (and variants of its options) against the
plain search of the same query, and against what the web view did before (one counting
search per value of type, tier and storage root).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import tantivy

from indexer.facets import FACET_FIELDS, aggregation_request
from indexer.query import Filters, expired_query, filter_clauses
from indexer.schema import SCHEMA_VERSION, TEXT_FIELDS, build_schema, make_document
from storage.records import Resource

from . import corpus, report
from .common import DEFAULT_DATA, REPO, log, summarize

TEXT_KINDS = {"txt", "md", "json", "csv", "log", "kv"}
CTYPES = {"txt": "text/plain", "md": "text/markdown", "json": "application/json",
          "kv": "application/json", "csv": "text/csv", "log": "text/plain",
          "pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg",
          "zip": "application/zip", "bin": "application/octet-stream"}
NOW = 1_800_000_000
EXPIRED_SHARE = 200          # one document in 200 is expired but not yet swept by gc


def resource(i: int) -> tuple[Resource, str]:
    """Corpus document ``i`` as the record the service would have made, and its text."""
    d = corpus.document(i, max_bytes=16_384)
    s = d.spec
    filename = s["filename"]
    path = s.get("path")
    if "slot" in s:
        root = corpus.slot_root(d.workspace, s["slot"])
        under = f"{path}/{filename}" if path else filename
        key = f"{d.workspace}/{root}/{under}"
    else:
        root = under = None
        key = "/".join(p for p in (d.workspace, s.get("flow"), s.get("step"), path, filename) if p)
    tier = s["tier"]
    expires = NOW - 10 if i % EXPIRED_SHARE == 0 else \
        NOW + (86_400 if tier == "ephemeral" else 365 * 86_400)
    res = Resource(
        id=f"r{i:09d}", workspace=d.workspace, type="result" if s["type"] == "kv" else "file",
        tier=tier, display_name=s.get("display-name") or filename, filename=filename,
        content_type=CTYPES[d.kind], size=len(d.body), sha256="0" * 64,
        storage_backend="platform", connection="platform", storage_root=root,
        path_under_root=under, path=key, slot=s.get("slot"), flow=s.get("flow"),
        step=s.get("step"), workflow_id=s.get("workflow-id"), tags=list(s.get("tags", [])),
        source_label="upload", created_at=NOW - 1000, updated_at=NOW - 1000,
        expires_at=expires, version=1, content_indexed=True, content_truncated=False,
        seq=i + 1)
    text = d.body.decode("utf-8", "replace") if d.kind in TEXT_KINDS else ""
    return res, text


def _schema() -> tantivy.Schema:
    # The service's schema plus the *old* expiry field (indexed and fast), so the old
    # query runs on the same index, in the same run, as the new one.
    return build_schema(lambda sb: sb.add_integer_field("expires_fast", indexed=True,
                                                        fast=True))


def build(directory: Path, size: int) -> dict[str, tantivy.Index]:
    """Both indexes, reused when a previous run left them complete."""
    schema = _schema()
    done = directory / "DONE"
    stamp = {"size": size, "schema": SCHEMA_VERSION}
    if done.exists() and {k: v for k, v in json.loads(done.read_text()).items()
                          if k in stamp} == stamp:
        return {name: tantivy.Index(schema, str(directory / name), reuse=True)
                for name in ("shared", "part")}
    indexes, writers = {}, {}
    for name in ("shared", "part"):
        (directory / name).mkdir(parents=True, exist_ok=True)
        indexes[name] = tantivy.Index(schema, str(directory / name), reuse=False)
        writers[name] = indexes[name].writer(200_000_000, 1)
    t0 = time.perf_counter()
    for i in range(size):
        res, text = resource(i)
        for name in ("shared", "part"):
            if name == "shared" or res.workspace == corpus.MAIN_WS:
                doc = make_document(res, text)
                doc.add_integer("expires_fast", int(res.expires_at or 0))
                writers[name].add_document(doc)
        if i and i % 50_000 == 0:
            log(f"  indexed {i:,} ({i / (time.perf_counter() - t0):,.0f}/s)")
    for w in writers.values():
        w.commit()
        w.wait_merging_threads()
    for index in indexes.values():
        index.reload()
    done.write_text(json.dumps({**stamp, "seconds": time.perf_counter() - t0}))
    return indexes


def interleaved(calls: dict[str, Callable[[], Any]], iters: int, budget_s: float
                ) -> dict[str, list[float]]:
    """Round-robin timing: one call of each variant per round, so a busy neighbour on
    this shared machine slows every variant alike instead of whichever ran then."""
    for fn in calls.values():          # warm: mmaps paged in, caches filled
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + budget_s * len(calls)
    for round_ in range(iters):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        if round_ >= 10 and time.perf_counter() > deadline:
            break
    return samples


def run(size: int, iters: int, budget_s: float, data: Path) -> dict[str, Any]:
    schema = _schema()
    log(f"tenancy: building/reusing {size:,} documents under {data}")
    idx = build(data / f"tenancy-{size}", size)
    searchers = {name: i.searcher() for name, i in idx.items()}
    parse = idx["shared"].parse_query
    fields = list(TEXT_FIELDS)
    Must, MustNot = tantivy.Occur.Must, tantivy.Occur.MustNot
    const = tantivy.Query.const_score_query
    boolean = tantivy.Query.boolean_query
    ws = tantivy.Query.term_query(schema, "workspace", corpus.MAIN_WS)
    live_fast = tantivy.Query.range_query(schema, "expires_fast", tantivy.FieldType.Integer,
                                          NOW + 1, 2**63 - 1)
    expired_fast = tantivy.Query.range_query(schema, "expires_fast",
                                             tantivy.FieldType.Integer, 0, NOW)
    root = corpus.slot_root(corpus.MAIN_WS, "archive")
    w = corpus.QUERY_WORDS
    shapes = {
        "common_word": (w["common"], Filters()),
        "phrase": ('"' + " ".join(corpus.PHRASE) + '"', Filters()),
        "two_words_or": (f"{w['or_a']} OR {w['or_b']}", Filters()),
        "word_root_prefix": (w["filtered"], Filters(storage_root=root,
                                                    path_prefix="exports/2026")),
        "rare_word": (corpus.rare_word(), Filters()),
    }

    def service_query(text: tantivy.Query | None, f: Filters, workspace: bool = True,
                      expired: bool = True) -> tantivy.Query:
        # What SearchIndex.query builds (flat const-score filters, expiry as MustNot);
        # ``workspace=False``: the same on a partition, without the workspace clause.
        must, must_not = filter_clauses(schema, corpus.MAIN_WS, f, NOW)
        if expired:     # the bench has expired documents: the service adds the clause
            must_not.insert(0, expired_query(schema, NOW))
        if not workspace:
            must = must[1:]
        clauses = [(Must, const(q, 0.0)) for q in must] + [(MustNot, q) for q in must_not]
        return boolean(([(Must, text)] if text is not None else []) + clauses)

    out: dict[str, Any] = {"size": size, "shapes": {},
                           "segments": {n: x.num_segments for n, x in searchers.items()}}
    for key, (q, f) in shapes.items():
        text = parse(q, fields)
        extra = filter_clauses(schema, corpus.MAIN_WS, f, NOW)[0][1:]
        old = boolean([(Must, text), (Must, const(boolean(
            [(Must, ws), (Must, live_fast), *[(Must, e) for e in extra]]), 0.0))])
        bare = text if not extra else boolean([(Must, text),
                                               *[(Must, const(e, 0.0)) for e in extra]])
        variants: dict[str, tuple[str, tantivy.Query, bool]] = {
            "before": ("shared", old, True),
            "before-nocount": ("shared", old, False),
            "flat-fastexpiry": ("shared", boolean(
                [(Must, text), (Must, const(ws, 0.0)), *[(Must, const(e, 0.0)) for e in extra],
                 (MustNot, expired_fast)]), True),
            "after": ("shared", service_query(text, f), True),
            "after-nocount": ("shared", service_query(text, f), False),
            "after-swept": ("shared", service_query(text, f, expired=False), True),
            "partition": ("part", service_query(text, f, workspace=False), True),
            "bare-shared": ("shared", bare, False),
            "bare-part": ("part", bare, False),
        }
        row: dict[str, Any] = {"q": q}
        calls = {}
        for name, (where, query, count) in variants.items():
            def call(s=searchers[where], query=query, count=count) -> Any:
                return s.search(query, 21, count=count)
            calls[name] = call
            row[name] = {"count": call().count}
        for name, samples in interleaved(calls, iters, budget_s).items():
            row[name].update(summarize(samples))
        base = row["bare-part"]["p50_ms"]
        for name in variants:
            row[name]["vs_bare_part"] = row[name]["p50_ms"] / base
        out["shapes"][key] = row
        log(f"  {key:<17} " + "  ".join(f"{n} {row[n]['p50_ms']:.2f}" for n in variants))
    # Facets: one aggregation against the plain search of the same query.
    query = service_query(parse(w["common"], fields), Filters())
    s = searchers["shared"]
    names = list(FACET_FIELDS)
    calls = {"plain search": lambda: s.search(query, 21, count=True)}
    for label, agg in (
            ("7 fields (the service's request)", aggregation_request(20)),
            ("7 fields, missing bucket", {
                n: {"terms": {"field": FACET_FIELDS[n], "size": 21, "missing": "\x00"}}
                for n in names}),
            ("7 fields, segment_size 10,000", {
                n: {"terms": {"field": FACET_FIELDS[n], "size": 20, "segment_size": 10_000}}
                for n in names}),
            ("6 fields (no workflow-id)", aggregation_request(20, names[:-1])),
            ("type + tier", aggregation_request(20, ["type", "tier"]))):
        calls[label] = lambda agg=agg: s.aggregate(query, agg)
    # The web view before: one counting search per value of type, tier and storage root,
    # plus one for the total (views.facets of v3), for the roots this workspace has.
    roots = [t for t, _ in s.terms_with_prefix("storage_root", "", filter_query=ws)]
    per_value = [query] + [
        boolean([(Must, query), (Must, const(tantivy.Query.term_query(schema, field, v), 0.0))])
        for field, values in (("type", ["file", "result"]), ("tier", ["retained", "ephemeral"]),
                              ("storage_root", roots)) for v in values]

    def old_web() -> None:
        for q in per_value:
            s.search(q, 1, count=True)
    calls[f"old web view: {len(per_value)} counting searches (type, tier, "
          f"{len(roots)} roots)"] = old_web
    samples = interleaved(calls, iters, budget_s)
    plain = summarize(samples.pop("plain search"))
    out["facets"] = {"fields": names, "plain": plain, "variants": {}}
    for label, values in samples.items():
        m = summarize(values)
        m["vs_plain"] = m["p50_ms"] / plain["p50_ms"]
        out["facets"]["variants"][label] = m
        log(f"  facets {label}: {m['p50_ms']:.2f} ms vs search {plain['p50_ms']:.2f} ms "
            f"({m['vs_plain']:.2f}x)")
    return out


LABELS = {
    "before": "before: text AND const(workspace AND live range, fast field), counted",
    "before-nocount": "before, count=False",
    "flat-fastexpiry": "flat const(workspace), NOT expired (fast field), counted",
    "after": "**after** (service now): flat const(workspace), NOT expired (term dict), counted",
    "after-nocount": "after, count=False",
    "after-swept": "after, nothing expired (clause left out, as after a gc sweep)",
    "partition": "partition of the workspace: NOT expired, counted (no workspace clause)",
    "bare-shared": "bare words, whole index",
    "bare-part": "baseline: bare words on only the workspace's documents",
}


def render(out: dict[str, Any]) -> str:
    """The RESULTS.md section of this figure (between its own markers)."""
    shapes = out["shapes"]
    keys = list(shapes)
    lines = ["<!-- bench:tenancy:start -->",
             f"## 6. Tenancy, expiry, totals and facets on Tantivy (`python -m bench.tenancy`)",
             "",
             f"- Run: {out.get('started', '?')}, code {out.get('git') or '?'}; load average "
             f"at start {out.get('load_start', '?')}, at end {out.get('load_end', '?')} "
             f"(2 shared cores: read ratios, not absolute values).",
             f"- {out['size']:,} corpus documents ({corpus.MAIN_WS} holds 60%), built with the "
             "service's schema and `make_document` (no blobs; segments: "
             f"{out.get('segments', '?')}); 1 document in 200 is expired but not yet "
             "swept. Variants are timed "
             "round-robin in one process; p50 in ms, ratio to the baseline (last row).",
             "",
             "| variant | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    for name in LABELS:
        cells = [f"{shapes[k][name]['p50_ms']:.2f} ({shapes[k][name]['vs_bare_part']:.2f}×)"
                 for k in keys]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    lines.append("| **after vs before** (p50) | " + " | ".join(
        f"**{shapes[k]['after']['p50_ms'] / shapes[k]['before']['p50_ms']:.2f}×**"
        for k in keys) + " |")
    lines.append("| partition vs after (p50) | " + " | ".join(
        f"{shapes[k]['partition']['p50_ms'] / shapes[k]['after']['p50_ms']:.2f}×"
        for k in keys) + " |")
    lines.append("| p99 of after (ms) | " + " | ".join(
        f"{shapes[k]['after']['p99_ms']:.2f}" for k in keys) + " |")
    lines.append("| matches (after) | " + " | ".join(
        f"{shapes[k]['after']['count']:,}" for k in keys) + " |")
    f = out["facets"]
    lines += ["", f"Facets ({', '.join(f['fields'])}) for `{corpus.QUERY_WORDS['common']}`: "
              f"plain search {f['plain']['p50_ms']:.2f} ms p50.", "",
              "| facet request | p50 ms | vs plain search |", "|---|---|---|"]
    for label, m in f["variants"].items():
        lines.append(f"| {label} | {m['p50_ms']:.2f} | {m['vs_plain']:.2f}× |")
    lines.append("<!-- bench:tenancy:end -->")
    return "\n".join(lines)


def write_section(path: Path, section: str, name: str = "tenancy") -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- bench:{name}:start -->.*?<!-- bench:{name}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tenancy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per variant at most")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the RESULTS.md section from the last run's JSON")
    args = ap.parse_args(argv)
    data = Path(args.data)
    raw = data / f"tenancy-{args.size}.json"
    if args.render_only:
        result = json.loads(raw.read_text())
    else:
        started, load_start = report.now_iso(), report.loadavg()
        result = run(args.size, args.iters, args.budget, data)
        result.update(started=started, load_start=load_start, load_end=report.loadavg(),
                      git=_git())
        raw.write_text(json.dumps(result, indent=2))
    write_section(Path(args.results), render(result))


def _git() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()

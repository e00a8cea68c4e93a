"""The benchmark code runs end to end on a tiny corpus and produces every figure.

No timing assertions: this only proves `make bench` / `make bench-quick` cannot rot.
"""
from __future__ import annotations

import json

from bench import report
from bench.run import MODES, main
from bench.search_latency import shapes


def test_bench_smoke_produces_every_figure(tmp_path):
    results = tmp_path / "RESULTS.md"
    run = main(["--smoke", "--data", str(tmp_path / "data"), "--results", str(results)])
    figures = run["figures"]
    assert run["finished"] and not run["errors"]
    assert set(report.FIGURE_KEYS) <= set(figures)

    size = str(MODES["smoke"]["sizes"][0])
    rows = figures["search_latency"]["sizes"][size]["shapes"]
    assert set(rows) == {s.key for s in shapes()}
    for row in rows.values():
        for engine in ("inproc", "http", "fts5"):
            assert {"p50_ms", "p95_ms", "p99_ms"} <= set(row[engine])
        assert row["speedup_p50"] > 0
    assert figures["search_latency"]["sizes"][size]["load"]["index_count"] == int(size)

    ing = figures["ingest"]
    assert {"one_by_one", "bulk", "raw_tantivy", "bulk_vs_raw", "one_by_one_vs_raw"} <= set(ing)
    st = figures["streaming"]
    assert {"core", "http", "copy", "core_vs_copy", "http_vs_copy"} <= set(st)
    assert st["core"]["rss_peak_mb"] > 0 and st["http"]["server_rss_peak_mb"] > 0
    assert figures["index_growth"]["ratio"] > 0
    assert figures["http_load"]["load"]["requests"] > 0
    # the same load on the real `resources serve --workers 2`
    assert figures["http_load"]["serve_workers"]["load"]["requests"] > 0
    assert figures["http_load"]["serve_workers"]["load"]["errors"] == 0

    text = results.read_text()
    assert "<!-- bench:smoke:start -->" in text and "### Targets" in text
    assert len(report.targets(figures)) >= 7      # + one row per extra bulk API
    saved = json.loads((tmp_path / "data" / "results-smoke.json").read_text())
    assert saved["finished"]

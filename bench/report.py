"""bench/RESULTS.md: one section per mode, each run replaces its own section only.

The file holds a ``quick`` and a ``full`` section between HTML comment markers; a run
rewrites its mode's section (also while it runs, after each figure, marked
"in progress") and keeps the other one as it was. The smoke test writes elsewhere.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

HEADER = """# Benchmark results

Written by `python -m bench.run` (`make bench` = `--full`, `make bench-quick` = `--quick`).
Each run rewrites only its own section below (between the `bench:<mode>` markers) and
keeps the other, so the last quick and the last full run sit side by side; a running
benchmark updates its section after every figure ("in progress"). Raw numbers of the
last run of each mode: `bench/.data/<mode>/results-<mode>.json`.

Every figure is printed as its value and as a ratio to its baseline. Latencies in ms,
MB = 10^6 bytes. See bench/__init__.py and each module's docstring for the method.
"""

#: Figure keys a complete run produces (the smoke test checks them).
FIGURE_KEYS = ("search_latency", "ingest", "streaming", "index_growth", "http_load")

TITLES = {"quick": "Quick run (`make bench-quick`)", "full": "Full run (`make bench`)",
          "smoke": "Smoke run (tests)"}


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _lat(d: dict | None) -> str:
    if not d:
        return "–"
    return f"{_fmt(d['p50_ms'])} / {_fmt(d['p95_ms'])} / {_fmt(d['p99_ms'])}"


def _mark(met: bool | None) -> str:
    return "–" if met is None else ("**met**" if met else "**not met**")


def targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sl = figures.get("search_latency")
    if sl and sl["sizes"]:
        size = max(sl["sizes"], key=int)
        rows = sl["sizes"][size]["shapes"]
        worst = max(rows.values(), key=lambda r: r["inproc"]["p50_ms"])
        slowest_ratio = min(rows.values(), key=lambda r: r["speedup_p50"])
        n_fast = sum(1 for r in rows.values() if r["inproc"]["p50_ms"] <= 5)
        n_2x = sum(1 for r in rows.values() if r["speedup_p50"] >= 2)
        at = f"at {int(size):,} resources" + ("" if int(size) >= 1_000_000
                                              else " (the target is stated for 1M)")
        out.append({"target": "search p50 ≤ 5 ms in-process (every shape)",
                    "measured": f"worst {_fmt(worst['inproc']['p50_ms'])} ms "
                                f"({worst['label']}); {n_fast}/{len(rows)} shapes ≤ 5 ms, {at}",
                    "met": worst["inproc"]["p50_ms"] <= 5})
        out.append({"target": "search ≥ 2× faster than FTS5 (p50, every shape)",
                    "measured": f"lowest {_fmt(slowest_ratio['speedup_p50'])}× "
                                f"({slowest_ratio['label']}); {n_2x}/{len(rows)} shapes ≥ 2×, {at}",
                    "met": slowest_ratio["speedup_p50"] >= 2})
        if "facets_all" in rows and "common_word" in rows:
            ratio = rows["facets_all"]["inproc"]["p50_ms"] / rows["common_word"]["inproc"]["p50_ms"]
            out.append({"target": "facet request (7 fields) ≤ 3× the plain search (p50)",
                        "measured": f"{_fmt(ratio)}× ({_fmt(rows['facets_all']['inproc']['p50_ms'])}"
                                    f" vs {_fmt(rows['common_word']['inproc']['p50_ms'])} ms), {at}",
                        "met": ratio <= 3})
        out += _issue18_targets(rows, at)
    hl = figures.get("http_load")
    if hl and hl.get("serve_workers"):
        hw = hl["serve_workers"]["load"]
        out.append({"target": f"HTTP, {hw['clients']} clients, `serve --workers "
                              f"{hl['serve_workers']['workers']}`: ≥ 2× the 180 req/s of the "
                              f"2026-11-23 run (one process), p99 ≤ 40 ms",
                    "measured": f"{_fmt(hw['rps'])} req/s ({_fmt(hw['rps'] / HTTP_RPS_BEFORE)}×; "
                                f"one process in this run: {_fmt(hl['load']['rps'])}), p99 "
                                f"{_fmt(hw['p99_ms'])} ms, at {int(hl['size']):,} resources",
                    "met": hw["rps"] >= 2 * HTTP_RPS_BEFORE and hw["p99_ms"] <= 40})
    ing = figures.get("ingest")
    if ing:
        out.append({"target": "bulk ingest ≥ 2,000 small resources/s",
                    "measured": f"{_fmt(ing['bulk']['per_s'])}/s", "met": ing["bulk"]["per_s"] >= 2000})
        pm = ing.get("persist_many")
        if pm:
            out.append({"target": "bulk ingest ≥ 2,000 small resources/s (via `persist_many`)",
                        "measured": f"{_fmt(pm['per_s'])}/s "
                                    f"({100 * ing['persist_many_vs_raw']:.1f}% of raw tantivy)",
                        "met": pm["per_s"] >= 2000})
        out.append({"target": "bulk ingest ≥ 50% of raw tantivy",
                    "measured": f"{100 * ing['bulk_vs_raw']:.1f}% "
                                f"({_fmt(ing['bulk']['per_s'])} vs {_fmt(ing['raw_tantivy']['per_s'])}/s)",
                    "met": ing["bulk_vs_raw"] >= 0.5})
    st = figures.get("streaming")
    if st:
        out.append({"target": "streaming persist ≥ 80% of copy speed (core)",
                    "measured": f"{100 * st['core_vs_copy']:.0f}% ({_fmt(st['core']['mb_s'])} vs "
                                f"{_fmt(st['copy']['mb_s'])} MB/s); HTTP {100 * st['http_vs_copy']:.0f}%",
                    "met": st["core_vs_copy"] >= 0.8})
        out.append({"target": "streaming peak RSS ≤ 100 MB (core process)",
                    "measured": f"{_fmt(st['core']['rss_peak_mb'])} MB (HTTP server: "
                                f"{_fmt(st['http']['server_rss_peak_mb'])} MB)",
                    "met": st["core"]["rss_peak_mb"] <= 100})
    ig = figures.get("index_growth")
    if ig:
        out.append({"target": "index size after one-by-one ≤ 2× bulk",
                    "measured": f"{ig['ratio']:.2f}× ({_fmt(ig['one_by_one']['bytes'] / 1e6)} MB vs "
                                f"{_fmt(ig['bulk']['bytes'] / 1e6)} MB, {ig['docs']:,} docs)",
                    "met": ig["ratio"] <= 2})
    return out


#: Requests/s of figure 5 at 1M before issue 18 (full run of 2026-11-23, code 04f507e).
HTTP_RPS_BEFORE = 180.0


def _issue18_targets(rows: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """Issue 18: p50 ≤ 3 ms and ≤ 1.5× the bare words on the workspace alone; p99 ≤ 3× p50."""
    plain = {k: r for k, r in rows.items() if "facets" not in k}
    out = []
    worst = max(plain.values(), key=lambda r: r["inproc"]["p50_ms"])
    out.append({"target": "search p50 ≤ 3 ms in-process (every shape)",
                "measured": f"worst {_fmt(worst['inproc']['p50_ms'])} ms ({worst['label']}; "
                            f"bare Tantivy {_fmt((worst.get('bare') or {}).get('p50_ms'))} ms), {at}",
                "met": worst["inproc"]["p50_ms"] <= 3})
    ratios = {k: r["vs_bare"] for k, r in plain.items() if r.get("vs_bare")}
    if ratios:
        key = max(ratios, key=ratios.get)
        n = sum(1 for v in ratios.values() if v <= 1.5)
        out.append({"target": "search p50 ≤ 1.5× the bare words on the workspace's documents alone",
                    "measured": f"worst {_fmt(ratios[key])}× ({plain[key]['label']}); "
                                f"{n}/{len(ratios)} shapes ≤ 1.5×, {at}",
                    "met": ratios[key] <= 1.5})
    spread = {k: r["inproc"]["p99_ms"] / r["inproc"]["p50_ms"] for k, r in plain.items()}
    key = max(spread, key=spread.get)
    out.append({"target": "p99 ≤ 3× p50 in-process (every shape)",
                "measured": f"worst {_fmt(spread[key])}× ({plain[key]['label']}), {at}",
                "met": spread[key] <= 3})
    return out


def render_section(mode: str, run: dict[str, Any]) -> str:
    figs = run["figures"]
    m = run["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [f"<!-- bench:{mode}:start -->", f"## {TITLES.get(mode, mode)}", ""]
    status = "complete" if run.get("finished") else "**in progress**"
    lines += [f"- Run: started {run['started']}, {status}"
              + (f", {run['seconds']:.0f} s" if run.get("finished") else "")
              + f"; load average at start {run['load_start']}, at last update {run['load_now']}.",
              f"- Machine: {m['cores']} cores ({m.get('cpu', '?')}), {m.get('memory_gib')} GiB RAM, "
              f"{m.get('filesystem', '?')} disk, Python {m['python']}, SQLite {m['sqlite']}; {pk}.",
              f"- Code: {run.get('git') or 'not recorded'}.",
              f"- Corpus: seed {run['corpus']['seed']}, {run['corpus']['describe']}.",
              f"- Settings: {run['config']}.", ""]
    tg = targets(figs)
    if tg:
        lines += ["### Targets", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['measured']} | {_mark(t['met'])} |" for t in tg]
        lines.append("")
    sl = figs.get("search_latency")
    if sl:
        for size, block in sorted(sl["sizes"].items(), key=lambda kv: int(kv[0])):
            ld = block["load"]
            lines += [f"### 1. Search latency at {int(size):,} resources", "",
                      f"Loaded through `service.persist` inside `service.batch()` blocks of "
                      f"{ld['batch']:,}, {ld['procs']} process(es), on `{block['home_kind']}`: "
                      f"{_fmt(ld['per_s'])}/s"
                      + (f"; index repaired by reindex ({ld['repaired']['missing']:,} missing)"
                         if ld.get("repaired") else "")
                      + f". FTS5 baseline built in {_fmt(block['fts5_build']['seconds'])} s "
                      f"({_fmt(block['fts5_build']['bytes'] / 1e6)} MB). p50 / p95 / p99 in ms; "
                      f"ratio = FTS5 p50 / service p50 (> 1: the service is faster).", "",
                      "Bare: the same words straight on Tantivy over only the workspace's "
                      "documents (its partition), no count, expiry or page load "
                      "(bench/search_latency.py).", "",
                      "| shape | total (FTS5) | in-process | bare | in-process vs bare | HTTP | FTS5 | in-process vs FTS5 | HTTP vs FTS5 |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for row in block["shapes"].values():
                vs_bare = f"{_fmt(row['vs_bare'])}×" if row.get("vs_bare") else "–"
                lines.append(f"| {row['label']} | {row['total']:,} ({row['fts5_total']:,}) | "
                             f"{_lat(row['inproc'])} | {_lat(row.get('bare'))} | {vs_bare} | "
                             f"{_lat(row['http'])} | {_lat(row['fts5'])} | "
                             f"{_fmt(row['speedup_p50'])}× | {_fmt(row['http_speedup_p50'])}× |")
            lines.append("")
    ing = figs.get("ingest")
    if ing:
        lines += [f"### 2. Ingest ({ing['docs']:,} small resources, mean body "
                  f"{ing['mean_body_bytes']:,} B)", "",
                  "| path | resources/s | vs raw tantivy |", "|---|---|---|",
                  f"| one by one (each persist committed) | {_fmt(ing['one_by_one']['per_s'])} | "
                  f"{100 * ing['one_by_one_vs_raw']:.2f}% |",
                  f"| bulk (`with service.batch()`) | {_fmt(ing['bulk']['per_s'])} | "
                  f"{100 * ing['bulk_vs_raw']:.2f}% |",
                  *([f"| bulk API (`service.persist_many`, per workspace) | "
                     f"{_fmt(ing['persist_many']['per_s'])} | "
                     f"{100 * ing['persist_many_vs_raw']:.2f}% |"] if ing.get("persist_many") else []),
                  f"| baseline: raw tantivy (make_document + add_document + 1 commit) | "
                  f"{_fmt(ing['raw_tantivy']['per_s'])} | 100% |", ""]
    st = figs.get("streaming")
    if st:
        lines += [f"### 3. Streaming persist ({st['bytes'] / 2**20:,.0f} MiB, ephemeral)", "",
                  "| path | MB/s | vs copy | peak RSS |", "|---|---|---|---|",
                  f"| core: `service.persist` from a generator (child process) | "
                  f"{_fmt(st['core']['mb_s'])} | {100 * st['core_vs_copy']:.0f}% | "
                  f"{_fmt(st['core']['rss_peak_mb'])} MB (start {_fmt(st['core']['rss_start_mb'])}) |",
                  f"| HTTP: httpx streaming upload → uvicorn | {_fmt(st['http']['mb_s'])} | "
                  f"{100 * st['http_vs_copy']:.0f}% | server {_fmt(st['http']['server_rss_peak_mb'])} MB "
                  f"(idle {_fmt(st['http']['server_rss_idle_mb'])}) |",
                  f"| baseline: `shutil.copyfile` + fsync, same disk | {_fmt(st['copy']['mb_s'])} | "
                  f"100% | – |",
                  f"| (copy without fsync, information) | {_fmt(st['copy']['no_fsync_mb_s'])} | – | – |",
                  ""]
    ig = figs.get("index_growth")
    if ig:
        lines += [f"### 4. Index growth ({ig['docs']:,} documents)", "",
                  "| index | size | segments | files | vs bulk |", "|---|---|---|---|---|",
                  f"| after one-by-one persists | {_fmt(ig['one_by_one']['bytes'] / 1e6)} MB | "
                  f"{ig['one_by_one']['segments']} | {ig['one_by_one']['files']} | {ig['ratio']:.2f}× |",
                  f"| baseline: same documents in bulk | {_fmt(ig['bulk']['bytes'] / 1e6)} MB | "
                  f"{ig['bulk']['segments']} | {ig['bulk']['files']} | 1.00× |", ""]
    hl = figs.get("http_load")
    if hl:
        ld, one = hl["load"], hl["single_client"]
        lines += [f"### 5. Concurrent HTTP search ({ld['clients']} clients, {ld['seconds']:.0f} s, "
                  f"at {int(hl['size']):,} resources)", "",
                  "| clients | requests/s | p50 | p99 | errors | vs one client |",
                  "|---|---|---|---|---|---|",
                  f"| {ld['clients']} | {_fmt(ld['rps'])} | {_fmt(ld['p50_ms'])} | "
                  f"{_fmt(ld['p99_ms'])} | {ld['errors']} | {_fmt(hl['rps_vs_single'])}× |",
                  f"| baseline: 1 | {_fmt(one['rps'])} | {_fmt(one['p50_ms'])} | "
                  f"{_fmt(one['p99_ms'])} | {one['errors']} | 1.00× |", ""]
        if hl.get("serve_workers"):
            sw = hl["serve_workers"]
            w, w1 = sw["load"], sw["single_client"]
            lines += [f"The same load on `resources serve --workers {sw['workers']}`:", "",
                      "| clients | requests/s | p50 | p99 | errors | vs one process, same clients |",
                      "|---|---|---|---|---|---|",
                      f"| {w['clients']} | {_fmt(w['rps'])} | {_fmt(w['p50_ms'])} | "
                      f"{_fmt(w['p99_ms'])} | {w['errors']} | {_fmt(w['rps'] / ld['rps'])}× |",
                      f"| 1 | {_fmt(w1['rps'])} | {_fmt(w1['p50_ms'])} | {_fmt(w1['p99_ms'])} | "
                      f"{w1['errors']} | {_fmt(w1['rps'] / one['rps'])}× |", ""]
    if run.get("notes"):
        lines += ["### Notes", ""] + [f"- {n}" for n in run["notes"]] + [""]
    lines.append(f"<!-- bench:{mode}:end -->")
    return "\n".join(lines)


def write(path: Path, mode: str, run: dict[str, Any]) -> None:
    section = render_section(mode, run)
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{mode}:start -->.*?<!-- bench:{mode}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        # Quick first, then full (stable order whichever ran first).
        if mode == "quick" and "<!-- bench:full:start -->" in text:
            text = text.replace("<!-- bench:full:start -->", section + "\n\n<!-- bench:full:start -->")
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def now_iso() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def write_marked_section(path: Path, name: str, section: str) -> None:
    """Replace the ``<!-- bench:NAME:start/end -->`` section of ``path`` with ``section``
    (which carries the markers), or append it (the standalone figures 6 and 7)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- bench:{name}:start -->.*?<!-- bench:{name}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def git_short(repo: Path) -> str | None:
    """The short commit of ``repo`` (None outside a checkout)."""
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

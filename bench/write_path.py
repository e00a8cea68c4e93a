"""`python -m bench.write_path`: the write path at storage speed (issue 15).

Figures, all in one run on one machine:
  - **bare**: the same 2 KB files written with ``fsync`` + rename, each followed by one
    SQLite insert transaction (WAL, ``synchronous=NORMAL``, as the catalog), by as many
    threads as there are HTTP clients: the floor any persist path pays;
  - **HTTP persist, N clients**: ``POST /v1/{ws}/resources`` of 2 KB text files from
    client processes (keep-alive ``http.client``, several threads each, so the clients'
    GIL is not the bottleneck) against ``resources serve --workers W``, acknowledged at
    durability (the default); throughput, p50/p99 latency, and the ratio to bare;
  - **change to searchable** under that load: a probe persists a unique word every
    100 ms and polls search until it is found (time from the acknowledgement);
  - **HTTP persist, 1 client**, sequential: p50/p99;
  - **in process**: one-by-one ``persist`` (library default: waits for the index;
    and acknowledged at durability with the follower running) and ``persist_many``.

``--code DIR`` runs the server (and the in-process figures) from another checkout, e.g.
the commit before the change, for a before/after table on the same machine and load.
The figures go to stdout as JSON and, with ``--write``, into bench/RESULTS.md between the
``bench:write-path`` markers (the other sections are kept).
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .common import DEFAULT_DATA, REPO, free_port, log, machine, summarize

WS = "ws-bench"
BODY = 2048


FILLER = b"lorem ipsum dolor sit amet " * 80


def body(word: str) -> bytes:
    head = f"{word} write path benchmark document ".encode()
    return head + FILLER[:BODY - len(head)]


# -- bare: fsync + rename + one catalog insert per file -----------------------------------
def bare(root: Path, threads: int, seconds: float) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "bare.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS r (id TEXT PRIMARY KEY, path TEXT, size INT)")
    conn.close()
    counts = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        c = sqlite3.connect(db, timeout=60, isolation_level=None)
        c.execute("PRAGMA synchronous=NORMAL")
        folder = root / f"t{k}"
        folder.mkdir(exist_ok=True)
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            name = f"{k}-{i}"
            tmp, final = folder / f".{name}.tmp", folder / f"{name}.txt"
            with open(tmp, "wb") as fh:
                fh.write(body(name))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            fd = os.open(folder, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO r VALUES (?, ?, ?)", (name, str(final), BODY))
            c.execute("COMMIT")
            lat[k].append(time.perf_counter() - t0)
            i += 1
        counts[k] = i
        c.close()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"threads": threads, "per_s": sum(counts) / elapsed,
            **summarize([x for per in lat for x in per])}


# -- the server ----------------------------------------------------------------------------
class Serve:
    def __init__(self, home: Path, code: Path, workers: int | None) -> None:
        self.home, self.code, self.workers = home, code, workers
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
        self.env.update(RESOURCES_HOME=str(home), PYTHONPATH=str(code))

    def key(self) -> str:
        out = subprocess.run([sys.executable, "-m", "search_api.cli", "keys", "create",
                              "--workspace", WS, "--scope", "resources.read,resources.write",
                              "--format", "json"], cwd=self.code, env=self.env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["data"]["key"]

    def __enter__(self) -> "Serve":
        self.api_key = self.key()
        cmd = [sys.executable, "-m", "search_api.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port)]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        self.log_fh = open(self.home.parent / f"serve-{self.port}.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.code, env=self.env, stdout=self.log_fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    time.sleep(1.5)        # every worker up and the writer elected
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not come up")

    def __exit__(self, *exc: object) -> None:
        import signal
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log_fh.close()


def _post(conn: http.client.HTTPConnection, key: str, name: str, word: str,
          query: str = "") -> dict:
    conn.request("POST", f"/v1/{WS}/resources{query}", body=body(word),
                 headers={"Authorization": f"Bearer {key}",
                          "X-Persist-Spec": json.dumps({"filename": f"{name}.txt"})})
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 201):
        raise RuntimeError(f"persist {r.status}: {data[:200]!r}")
    return json.loads(data)


def _search_total(conn: http.client.HTTPConnection, key: str, word: str) -> int:
    conn.request("GET", f"/v1/{WS}/resources/search?q={word}",
                 headers={"Authorization": f"Bearer {key}"})
    r = conn.getresponse()
    return json.loads(r.read())["meta"]["total"]


def _client_proc(port: int, key: str, threads: int, seconds: float, tag: str, out) -> None:
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0]
    start = time.perf_counter() + 0.5
    deadline = start + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < start:
            time.sleep(0.01)
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                _post(conn, key, f"{tag}-{k}-{i}", f"load{tag}x{k}x{i}")
                lat[k].append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - counted
                errors[0] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            i += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put({"lat": [x for per in lat for x in per], "errors": errors[0]})


def http_load(port: int, key: str, clients: int, seconds: float, procs: int = 4,
              probe: bool = True) -> dict[str, Any]:
    procs = min(procs, clients)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    ps = [ctx.Process(target=_client_proc, args=(port, key, n, seconds, f"p{i}", q))
          for i, n in enumerate(per)]
    for p in ps:
        p.start()
    visible: list[float] = []
    stop = threading.Event()

    def prober() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        time.sleep(1.5)                       # the load is running
        while not stop.is_set():
            word = f"probe{uuid.uuid4().hex[:12]}"
            _post(conn, key, word, word)
            acked = time.perf_counter()
            while _search_total(conn, key, word) == 0:
                time.sleep(0.005)
                if time.perf_counter() - acked > 30:
                    raise RuntimeError("probe never became searchable")
            visible.append(time.perf_counter() - acked)
            stop.wait(0.1)

    pt = threading.Thread(target=prober, daemon=True)
    if probe:
        pt.start()
    results = [q.get() for _ in ps]
    stop.set()
    for p in ps:
        p.join()
    if probe:
        pt.join(60)
    lat = [x for r in results for x in r["lat"]]
    out = {"clients": clients, "per_s": len(lat) / seconds,
           "errors": sum(r["errors"] for r in results), **summarize(lat)}
    if probe:
        out["searchable"] = summarize(visible)
    return out


def sequential(port: int, key: str, n: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        _post(conn, key, f"seq-{i}", f"seq{i}")
        lat.append(time.perf_counter() - t0)
    return summarize(lat)


# -- in process ----------------------------------------------------------------------------
def _in_process(code: str, home: str, n: int, out) -> None:
    sys.path.insert(0, code)
    from search_api.service import ResourceService
    from storage.config import Settings
    res: dict[str, Any] = {}
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    t0 = time.perf_counter()
    for i in range(n):
        svc.persist(WS, {"filename": f"wait-{i}.txt"}, body(f"wait{i}"))
    res["one_by_one_wait_per_s"] = n / (time.perf_counter() - t0)
    # (An older checkout has no follower; the editable install's finder would still
    # import this checkout's follower module, so ask the index itself.)
    if hasattr(svc.index, "wait_for"):
        from indexer.follower import IndexFollower
        follower = IndexFollower(svc.index, log=lambda m: None).start()
        svc.follower, svc.wait_default = follower, False
        t0 = time.perf_counter()
        for i in range(n):
            svc.persist(WS, {"filename": f"durable-{i}.txt"}, body(f"durable{i}"))
        res["one_by_one_durable_per_s"] = n / (time.perf_counter() - t0)
        svc.wait_default = True
        svc.follower = None
        follower.stop()
    m = n * 5
    t0 = time.perf_counter()
    svc.persist_many(WS, (({"filename": f"many-{i}.txt"}, body(f"many{i}")) for i in range(m)))
    res["persist_many_per_s"] = m / (time.perf_counter() - t0)
    svc.close()
    out.put(res)


def in_process(code: Path, home: Path, n: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_in_process, args=(str(code), str(home), n, q))
    p.start()
    res = q.get()
    p.join()
    return res


# -- the run -------------------------------------------------------------------------------
def run(code: Path, data: Path, seconds: float, clients: int, workers: list[int | None],
        seq_n: int, inproc_n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "code": str(code), "seconds": seconds,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "load_start": os.getloadavg()}
    log(f"bare fsync+insert, {clients} threads")
    out["bare"] = bare(data / "bare", clients, seconds)
    out["bare_1"] = bare(data / "bare1", 1, min(seconds, 5))
    out["http"] = {}
    for w in workers:
        home = data / f"home-w{w}"
        home.mkdir(parents=True)
        log(f"HTTP persist, {clients} clients, workers={w}")
        with Serve(home / "home", code, w) as srv:
            out["http"][str(w)] = {"load": http_load(srv.port, srv.api_key, clients, seconds),
                                   "one_client": sequential(srv.port, srv.api_key, seq_n)}
    log("in process")
    out["in_process"] = in_process(code, data / "inproc", inproc_n)
    out["load_end"] = os.getloadavg()
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """A RESULTS.md section: one column per labelled run (e.g. before / after)."""
    lines = ["## Write path (`python -m bench.write_path`)", ""]
    any_run = next(iter(results.values()))
    m = any_run["machine"]
    lines.append(f"- Machine: {m['cores']} cores ({m.get('cpu', '?')}), {m.get('filesystem', '?')}"
                 f" disk, SQLite {m['sqlite']}; shared with other work (load average "
                 f"{' '.join(f'{x:.2f}' for x in any_run['load_start'])} at start).")
    lines.append(f"- 2 KB text files; {any_run['seconds']:g} s per load; started "
                 f"{any_run['started']}. Bare = the same files with fsync + rename + fsync "
                 f"of the folder + one SQLite insert transaction each, same thread count, "
                 f"same run. Latencies in ms.")
    lines.append("")
    for label, r in results.items():
        lines.append(f"### {label}")
        lines.append("")
        lines.append("| figure | value | vs bare |")
        lines.append("|---|---|---|")
        b = r["bare"]
        lines.append(f"| bare fsync+insert, {b['threads']} threads | {b['per_s']:,.0f}/s, "
                     f"p50 {b['p50_ms']:.1f}, p99 {b['p99_ms']:.1f} | 1.00 |")
        lines.append(f"| bare, 1 thread | {r['bare_1']['per_s']:,.0f}/s | |")
        for w, h in r["http"].items():
            ld, one = h["load"], h["one_client"]
            wl = "serve" if w == "None" else f"serve --workers {w}"
            lines.append(f"| HTTP persist, {ld['clients']} clients, {wl} | {ld['per_s']:,.0f}/s "
                         f"({ld['errors']} errors), p50 {ld['p50_ms']:.1f}, p99 "
                         f"{ld['p99_ms']:.1f} | {ld['per_s'] / b['per_s']:.2f} |")
            if "searchable" in ld and ld["searchable"]["n"]:
                s = ld["searchable"]
                lines.append(f"| change → searchable under that load ({wl}) | p50 "
                             f"{s['p50_ms']:.0f}, p99 {s['p99_ms']:.0f} ({s['n']} probes) | |")
            lines.append(f"| HTTP persist, 1 client sequential ({wl}) | p50 {one['p50_ms']:.1f}, "
                         f"p99 {one['p99_ms']:.1f} | |")
        ip = r["in_process"]
        lines.append(f"| in process, one by one, waiting for the index | "
                     f"{ip['one_by_one_wait_per_s']:,.0f}/s | |")
        if "one_by_one_durable_per_s" in ip:
            lines.append(f"| in process, one by one, acknowledged at durability | "
                         f"{ip['one_by_one_durable_per_s']:,.0f}/s | |")
        lines.append(f"| in process, `persist_many` | {ip['persist_many_per_s']:,.0f}/s | |")
        lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    start, end = "<!-- bench:write-path:start -->", "<!-- bench:write-path:end -->"
    doc = path.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", default="1,2", help="comma list; 0 = serve's own default")
    ap.add_argument("--code", action="append", default=[],
                    help="LABEL=DIR of a checkout to measure (repeatable); default this one")
    ap.add_argument("--seq", type=int, default=200, help="sequential single-client persists")
    ap.add_argument("--inproc", type=int, default=300, help="one-by-one in-process persists")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args(argv)
    codes = [c.split("=", 1) for c in args.code] or [["this", str(REPO)]]
    results = {}
    for label, code in codes:
        DEFAULT_DATA.mkdir(parents=True, exist_ok=True)
        data = Path(tempfile.mkdtemp(prefix="write-path-", dir=DEFAULT_DATA))
        try:
            workers: list[int | None] = [int(w) or None for w in args.workers.split(",")]
            if label.startswith("before"):
                workers = [None]              # one process: the old code has no --workers
            results[label] = run(Path(code), data, args.seconds, args.clients, workers,
                                 args.seq, args.inproc)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()

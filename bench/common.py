"""Shared helpers: machine description, timing and percentiles, RSS sampling, data homes,
the HTTP server subprocess and the (parallel) bulk corpus loader."""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
# The lexical figures measure no embedding: their servers and services run without the
# model (bench/semantic.py turns it on for its own homes).
os.environ.setdefault("RESOURCES_SEMANTIC", "off")
DEFAULT_DATA = REPO / "bench" / ".data"
MiB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- machine -----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import sqlite3
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        out = subprocess.run(["df", "-T", str(REPO)], capture_output=True, text=True).stdout
        info["filesystem"] = out.splitlines()[1].split()[1]
    except Exception:  # noqa: BLE001 - informative only
        pass
    pkgs = {}
    for name in ("tantivy", "pypdf", "starlette", "uvicorn", "httpx", "sqlite-utils",
                 "python-magic"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    info["packages"] = pkgs
    return info


# -- timing ------------------------------------------------------------------------------
def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summarize(samples: list[float]) -> dict[str, float]:
    """Latency samples (seconds) -> p50/p95/p99/mean in milliseconds."""
    s = sorted(samples)
    return {"p50_ms": percentile(s, 50) * 1000, "p95_ms": percentile(s, 95) * 1000,
            "p99_ms": percentile(s, 99) * 1000,
            "mean_ms": (sum(s) / len(s) * 1000) if s else float("nan"), "n": len(s)}


def measure(fn: Callable[[], Any], iters: int, budget_s: float, warmup: int = 3,
            min_iters: int = 5) -> list[float]:
    """Call ``fn`` up to ``iters`` times (at least ``min_iters``) within ``budget_s``."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 > budget_s / 10:
            break           # a slow call is warm after one run; keep the budget for samples
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < iters:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= min_iters and time.perf_counter() > deadline:
            break
    return samples


# -- memory ------------------------------------------------------------------------------
def _status_kb(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmRSS") / 1024


def hwm_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmHWM") / 1024


class RssSampler:
    """Samples VmRSS of a process (default: this one) in a thread; ``peak_mb`` after."""

    def __init__(self, pid: int | str = "self", interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.start_mb = rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


# -- files -------------------------------------------------------------------------------
def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(os.path.realpath(path)):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def open_service(home: Path):
    from search_api.service import ResourceService
    from storage.config import Settings
    return ResourceService(Settings.from_env(home), log=lambda msg: None)


# -- HTTP server subprocess --------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`create_app(service=ResourceService(home))` under a real uvicorn, in a subprocess
    (so the client's GIL and memory are not the server's); see ``bench.server``.

    With ``workers``, the real `resources serve --workers N` on the home instead (N
    request processes on one port, uvicorn's supervisor in front)."""

    def __init__(self, home: Path, log_path: Path | None = None,
                 workers: int | None = None) -> None:
        self.home = home
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or (home.parent / f"server-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        import httpx
        self._log = open(self.log_path, "ab")
        if self.workers:
            # Request logs at warning, like bench.server: the figure is the search's.
            argv = [sys.executable, "-m", "search_api.cli", "serve", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", str(self.workers),
                    "--log-level", "warning"]
        else:
            argv = [sys.executable, "-m", "bench.server", str(self.home), str(self.port)]
        env = {**os.environ, "RESOURCES_HOME": str(self.home)}
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench server exited ({self.proc.returncode}); "
                                   f"see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("bench server did not come up")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# -- bulk corpus loader ------------------------------------------------------------------
def _load_worker(home: str, ranges: list[tuple[int, int]], max_bytes: int | None,
                 counter, barrier, syncs: bool) -> None:
    from bench.corpus import documents
    svc = open_service(Path(home))
    if barrier is not None:
        # Every loader opens its service (which runs crash recovery) before any persist
        # starts: recovery in one process would remove another's staged-but-unpublished
        # files (their flock is released by BlobWriter.finish; see the report's notes).
        barrier.wait()
    outer = contextlib.nullcontext() if syncs else svc.batch()
    try:
        with outer:          # non-syncing loaders: one outer batch, worker 0 indexes all
            for start, stop in ranges:
                with svc.batch():
                    for d in documents(start, stop, max_bytes):
                        svc.persist(d.workspace, d.spec, d.body)
                with counter.get_lock():
                    counter.value += stop - start
    finally:
        svc.close()


def load_corpus(home: Path, start: int, stop: int, procs: int = 1, batch: int = 5000,
                max_bytes: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Persist documents ``start..stop`` through ``service.persist`` inside
    ``service.batch()`` blocks of ``batch`` documents, in ``procs`` processes.

    With several processes only the first commits the index (every ``batch`` of its own
    documents it drains everybody's outbox); the others defer to the end. Afterwards the
    index is checked against the catalog and rebuilt (``service.reindex()``) if any
    document is missing, which is reported (``repaired``)."""
    from bench.corpus import bind_slots
    svc = open_service(home)
    bind_slots(svc)
    svc.close()
    chunks = [(a, min(a + batch, stop)) for a in range(start, stop, batch)]
    t0 = time.perf_counter()
    if procs <= 1:
        counter = mp.Value("q", 0)
        _load_worker(str(home), chunks, max_bytes, counter, None, True)
    else:
        ctx = mp.get_context("spawn")
        counter = ctx.Value("q", 0)
        barrier = ctx.Barrier(procs)
        workers = [ctx.Process(target=_load_worker,
                               args=(str(home), chunks[k::procs], max_bytes, counter,
                                     barrier, k == 0),
                               name=f"bench-loader-{k}") for k in range(procs)]
        for w in workers:
            w.start()
        last = time.monotonic()
        while any(w.is_alive() for w in workers):
            time.sleep(0.5)
            if any(w.exitcode not in (None, 0) for w in workers):
                for w in workers:
                    if w.is_alive():
                        w.terminate()
                break
            if progress and time.monotonic() - last > 60:
                last = time.monotonic()
                done = counter.value
                rate = done / (time.perf_counter() - t0)
                log(f"  loaded {start + done:,}/{stop:,} ({rate:,.0f}/s)")
        for w in workers:
            w.join()
            if w.exitcode != 0:
                raise RuntimeError(f"loader {w.name} failed with exit code {w.exitcode}")
    svc = open_service(home)     # drain whatever a busy writer left in the outbox
    try:
        svc.index.sync(wait=600)
        seconds = time.perf_counter() - t0
        count = svc.catalog.resources.count()
        indexed = svc.index.count()
        repaired = None
        if indexed != count:
            log(f"  index has {indexed:,} documents for {count:,} records: reindexing")
            t1 = time.perf_counter()
            svc.reindex()
            repaired = {"missing": count - indexed, "reindex_seconds": time.perf_counter() - t1}
            indexed = svc.index.count()
    finally:
        svc.close()
    return {"docs": stop - start, "seconds": seconds, "per_s": (stop - start) / seconds,
            "catalog_count": count, "index_count": indexed, "procs": procs, "batch": batch,
            "repaired": repaired}


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)

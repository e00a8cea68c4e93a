"""Prometheus multiprocess mode for `serve --workers N`: one truth from N processes.

How the pieces fit (prometheus-client's multiprocess mode, plus what it leaves to us):

- ``prepare(home)`` (the `serve` parent, before uvicorn spawns the workers) empties
  ``<home>/metrics-multiproc`` and exports ``PROMETHEUS_MULTIPROC_DIR``: every worker's
  counters and histograms then live in per-process files there, and a scrape sums them
  (``scrape_registry``) whichever worker answers. A dead worker's counter files stay:
  what it counted still happened, so totals never go backwards.
- The snapshot gauges (storage usage, index lag, documents, disk free) need a catalog
  scan: one process computes them, the holder of ``refresher.lock`` (an flock, so a dead
  holder's lock is released by the kernel and another worker takes over at its next
  refresh). It publishes them whole to ``snapshot.json``, which every scrape reads: no
  per-process disagreement, no N scans, and a workspace that disappears from the catalog
  disappears from the gauges, as in single-process mode.
- Process figures: RSS, virtual memory, open and max fds, start time are ``liveall``
  gauges (one series per worker, label ``pid``); CPU seconds is a counter (summed over
  every worker that ever ran, so it only grows). A worker that exits marks itself dead
  (``mark_process_dead``: its live gauges go); one that is killed is marked by the
  parent's ``Janitor``.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .loops import Periodic

logger = logging.getLogger("resources.jobs")

ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_NAME = "metrics-multiproc"
SNAPSHOT_FILE = "snapshot.json"
LOCK_FILE = "refresher.lock"


def directory() -> Path | None:
    """The multiprocess directory of this process, or None (single-process mode)."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def prepare(home: Path) -> Path:
    """Empty ``<home>/metrics-multiproc`` and export it (call before the workers start):
    files left by an earlier run would add its counts to this one's."""
    path = Path(home) / DIR_NAME
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[ENV] = str(path)
    return path


# -- the snapshot gauges, computed by one process ----------------------------------------
class RefreshLock:
    """Held (non-blocking flock) by the one process that computes the snapshot gauges;
    kept until that process exits."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_FILE
        self._fh: Any = None

    def held(self) -> bool:
        if self._fh is not None:
            return True
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()          # closing drops the flock
            self._fh = None


def publish(path: Path, families: list[GaugeMetricFamily]) -> None:
    """Write the snapshot whole (rename), so a reader never sees half of one."""
    out = []
    for fam in families:
        samples = [[dict(s.labels), s.value] for s in fam.samples]
        out.append({"name": fam.name, "help": fam.documentation,
                    "labels": list(getattr(fam, "_labelnames", ())), "samples": samples})
    tmp = path / f".{SNAPSHOT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path / SNAPSHOT_FILE)


class SharedSnapshot(Collector):
    """The published snapshot gauges, read at each scrape (nothing if none yet)."""

    def __init__(self, path: Path) -> None:
        self.file = path / SNAPSHOT_FILE

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return []
        fams = []
        for item in data:
            names = item["labels"]
            fam = GaugeMetricFamily(item["name"], item["help"], labels=names)
            for labels, value in item["samples"]:
                fam.add_metric([labels[n] for n in names], value)
            fams.append(fam)
        return fams


def scrape_registry(path: Path) -> CollectorRegistry:
    """What a scrape renders in multiprocess mode: every process's counters, histograms
    and live gauges summed from their files, and the one published snapshot."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))
    registry.register(SharedSnapshot(path))
    return registry


# -- process figures per worker ----------------------------------------------------------
_PROCESS_GAUGES = {
    "process_resident_memory_bytes": "Resident memory size in bytes (per worker: pid)",
    "process_virtual_memory_bytes": "Virtual memory size in bytes (per worker: pid)",
    "process_open_fds": "Number of open file descriptors (per worker: pid)",
    "process_max_fds": "Maximum number of open file descriptors (per worker: pid)",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds "
                                  "(per worker: pid)",
}


class ProcessMetrics:
    """This worker's process figures, copied from prometheus-client's process collector
    into multiprocess metrics at each ``update`` (refresh and scrape)."""

    def __init__(self) -> None:
        self._source = ProcessCollector(registry=None)
        self._lock = threading.Lock()
        self.gauges = {name: Gauge(name, doc, multiprocess_mode="liveall", registry=None)
                       for name, doc in _PROCESS_GAUGES.items()}
        self.cpu = Counter("process_cpu_seconds", "Total user and system CPU time spent "
                           "in seconds (summed over every worker)", registry=None)
        self._cpu_seen = 0.0

    def update(self) -> None:
        with self._lock:
            for fam in self._source.collect():
                for s in fam.samples:
                    gauge = self.gauges.get(s.name)
                    if gauge is not None:
                        gauge.set(s.value)
                    elif s.name == "process_cpu_seconds_total" and s.value > self._cpu_seen:
                        self.cpu.inc(s.value - self._cpu_seen)
                        self._cpu_seen = s.value


def mark_dead(pid: int, path: Path) -> None:
    multiprocess.mark_process_dead(pid, str(path))


# -- the parent: a killed worker's live gauges go ----------------------------------------
_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                  # a zombie is dead, whoever reaps it
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep(path: Path) -> list[int]:
    """Mark dead every process whose live gauge files remain; returns their pids."""
    dead = set()
    try:
        names = os.listdir(path)
    except OSError:
        return []
    for name in names:
        m = _LIVE_FILE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in dead:
        mark_dead(pid, path)
    return sorted(dead)


class Janitor(Periodic):
    """The `serve` parent's thread: a worker that died without saying so (SIGKILL, OOM)
    is marked dead within ``interval`` seconds."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        super().__init__("metrics-janitor", interval)
        self.path = path

    def tick(self) -> None:
        try:
            sweep(self.path)
        except Exception as exc:  # noqa: BLE001 - keep sweeping, say why
            logger.error("metrics janitor failed: %r", exc)

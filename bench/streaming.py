"""Figure 3: a large ephemeral persist, streamed, in MB/s, and peak memory.

* core: ``service.persist(ws, {"tier": "ephemeral", ...}, generator)`` in a fresh child
  process (``python -m bench.streaming core HOME BYTES``), so its RSS is the persist's
  own and not the benchmark's; a thread samples ``/proc/self/status`` VmRSS every 10 ms.
* HTTP: httpx streams the same bytes (chunked upload from a generator) to
  ``POST /v1/{ws}/resources`` of a real uvicorn subprocess on its own data home, with an
  API key from ``service.keys.create``; the *server's* VmRSS is sampled.
* baseline: ``shutil.copyfile`` of a file with the same bytes on the same disk, then
  ``os.fsync`` of the copy (the service fsyncs before it acknowledges; the copy without
  fsync is reported too, as information).

The body is one 1 MiB random block repeated (no allocation per chunk, not compressible).
MB = 10^6 bytes. Files are removed after the figure.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .common import (MiB, REPO, RssSampler, Server, fresh_dir, hwm_mb, log, open_service,
                     rss_mb)

WS = "ws-stream"
SPEC = {"type": "blob", "tier": "ephemeral", "filename": "big-stream.bin",
        "path": "streams/2026", "flow": "bench", "step": "stream"}


def body(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = os.urandom(chunk) if total > 0 else b""
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block if n == chunk else block[:n]
        sent += n


def _core_child(home: Path, total: int) -> dict[str, Any]:
    svc = open_service(home)
    gen = body(total)
    try:
        with RssSampler() as rss:
            t0 = time.perf_counter()
            res = svc.persist(WS, SPEC, gen).resource
            seconds = time.perf_counter() - t0
        assert res.size == total
        svc.delete(WS, res.uri)
        return {"seconds": seconds, "mb_s": total / seconds / 1e6, "rss_start_mb": rss.start_mb,
                "rss_peak_mb": rss.peak_mb, "vmhwm_mb": hwm_mb(), "samples": rss.samples}
    finally:
        svc.close()


def core(home: Path, total: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.streaming", "core", str(home), str(total)],
                         cwd=REPO, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"streaming child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def copy_baseline(directory: Path, total: int) -> dict[str, Any]:
    src, dst = directory / "copy-src.bin", directory / "copy-dst.bin"
    with open(src, "wb") as fh:
        for chunk in body(total):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        t0 = time.perf_counter()
        shutil.copyfile(src, dst)
        nosync = time.perf_counter() - t0
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "mb_s": total / seconds / 1e6,
                "no_fsync_seconds": nosync, "no_fsync_mb_s": total / nosync / 1e6}
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def http(home: Path, total: int) -> dict[str, Any]:
    import httpx
    svc = open_service(home)
    try:
        _, key = svc.keys.create(WS, ["resources.read", "resources.write"], None, svc.now())
    finally:
        svc.close()
    with Server(home) as server:
        idle_mb = rss_mb(server.pid)
        headers = {"Authorization": f"Bearer {key}", "X-Persist-Spec": json.dumps(SPEC)}
        with httpx.Client(base_url=server.url, timeout=600) as client:
            with RssSampler(server.pid) as rss:
                t0 = time.perf_counter()
                r = client.post(f"/v1/{WS}/resources", content=body(total), headers=headers)
                seconds = time.perf_counter() - t0
            if r.status_code != 201:
                raise RuntimeError(f"HTTP persist -> {r.status_code}: {r.text[:300]}")
            uri = r.json()["data"]["uri"]
            assert r.json()["data"]["size"] == total
            client.delete(f"/v1/{WS}/resources/by-uri", params={"uri": uri}, headers=headers)
        server_hwm = hwm_mb(server.pid)
    return {"seconds": seconds, "mb_s": total / seconds / 1e6, "server_rss_idle_mb": idle_mb,
            "server_rss_peak_mb": rss.peak_mb, "server_vmhwm_mb": server_hwm,
            "samples": rss.samples}


def run(data_dir: Path, total: int) -> dict[str, Any]:
    directory = fresh_dir(data_dir / "streaming")
    try:
        log(f"  copy baseline: {total / MiB:,.0f} MiB with shutil.copyfile + fsync")
        copy = copy_baseline(directory, total)
        log(f"    {copy['mb_s']:,.0f} MB/s (without fsync {copy['no_fsync_mb_s']:,.0f} MB/s)")
        log("  core: service.persist from a generator (child process)")
        core_r = core(directory / "core-home", total)
        log(f"    {core_r['mb_s']:,.0f} MB/s, peak RSS {core_r['rss_peak_mb']:.0f} MB")
        log("  HTTP: streaming upload to POST /v1/{ws}/resources")
        http_r = http(directory / "http-home", total)
        log(f"    {http_r['mb_s']:,.0f} MB/s, server peak RSS {http_r['server_rss_peak_mb']:.0f} MB")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"bytes": total, "copy": copy, "core": core_r, "http": http_r,
            "core_vs_copy": core_r["mb_s"] / copy["mb_s"],
            "http_vs_copy": http_r["mb_s"] / copy["mb_s"]}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "core":
        print(json.dumps(_core_child(Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        sys.exit("usage: python -m bench.streaming core HOME BYTES")

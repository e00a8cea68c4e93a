"""CONTRACT tiers: retained is capped at 50 MiB (413, nothing kept); ephemeral takes large
streamed bodies with flat memory. Bodies come from generators, never built in memory."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import files_under
from storage.errors import TooLarge

WS = "ws-acme"
MiB = 1024 * 1024
RETAINED_MAX = 52_428_800
REPO = Path(__file__).resolve().parents[2]


def stream(total: int, chunk: int = MiB):
    """``total`` bytes in chunks, one chunk object reused (flat memory)."""
    block = (bytes(range(256)) * (chunk // 256 + 1))[:chunk]
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block if n == chunk else block[:n]
        sent += n


def test_retained_limit_is_the_contract_default(settings):
    assert settings.tiers["retained"].max_bytes == RETAINED_MAX
    assert settings.tiers["ephemeral"].max_bytes == 4 * 1024 ** 3


def test_retained_over_the_limit_fails_and_keeps_nothing(service, home):
    before = files_under(home)
    pulled = 0

    def body():
        nonlocal pulled
        for chunk in stream(RETAINED_MAX + 1, chunk=3 * 1024 * 1024 + 17):
            pulled += len(chunk)
            yield chunk

    with pytest.raises(TooLarge) as err:
        service.persist(WS, {"filename": "big.bin"}, body())
    assert err.value.status == 413 and err.value.code == "too_large"
    assert "52,428,800" in err.value.message
    assert pulled == RETAINED_MAX + 1    # streamed to the end: the limit is the byte count
    assert list((home / "tmp").iterdir()) == []
    assert files_under(home) == before
    assert service.catalog.resources.count() == 0
    assert service.list(WS).total == 0


def test_retained_exactly_at_the_limit_is_kept(service, home):
    h = hashlib.sha256()
    for chunk in stream(RETAINED_MAX):
        h.update(chunk)
    res = service.persist(WS, {"filename": "edge.bin"}, stream(RETAINED_MAX)).resource
    assert res.size == RETAINED_MAX
    assert res.sha256 == h.hexdigest()
    assert (home / res.path).stat().st_size == RETAINED_MAX
    assert list((home / "tmp").iterdir()) == []


def test_too_large_through_begin_persist_also_cleans_up(service, home):
    job = service.begin_persist(WS, {"filename": "big.bin"})
    assert len(list((home / "tmp").iterdir())) == 1      # staged while streaming
    with pytest.raises(TooLarge):
        for chunk in stream(RETAINED_MAX + MiB):
            job.write(chunk)
    assert list((home / "tmp").iterdir()) == []
    assert service.catalog.resources.count() == 0


def test_an_aborted_persist_keeps_nothing(service, home):
    before = files_under(home)

    def failing():
        yield b"x" * MiB
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        service.persist(WS, {"filename": "cut.bin"}, failing())
    assert list((home / "tmp").iterdir()) == []
    assert files_under(home) == before
    assert service.catalog.resources.count() == 0


MEASURE = textwrap.dedent("""
    import hashlib, json, sys, threading, time
    sys.path.insert(0, sys.argv[2])
    from search_api.service import ResourceService
    from storage.config import Settings

    MiB = 1024 * 1024
    TOTAL = int(sys.argv[3])
    kind = sys.argv[4]

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])      # kB

    def stream(total):
        if kind == "text":
            block = (b"plain words of a long streamed log line number " * 30000)[:MiB]
        else:
            block = bytes(range(256)) * (MiB // 256)
        sent = 0
        while sent < total:
            n = min(MiB, total - sent)
            yield block if n == MiB else block[:n]
            sent += n

    svc = ResourceService(Settings.from_env(sys.argv[1]), log=lambda m: None)
    # warm up the code paths (imports, libmagic, index writer) on a tiny body
    svc.persist("ws-acme", {"filename": "warm.log", "tier": "ephemeral"}, stream(4096))
    baseline = status("VmRSS")
    # ru_maxrss survives exec (it starts at the parent's peak), so measure this process's
    # own peak: reset VmHWM (Linux >= 4.0) and sample VmRSS from a thread as well.
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    sampled = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            sampled.append(status("VmRSS"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    res = svc.persist("ws-acme", {"filename": "big.log", "tier": "ephemeral"},
                      stream(TOTAL)).resource
    done.set()
    sampler.join()
    peak = max(max(sampled), status("VmHWM") if hwm_reset else 0)
    h = hashlib.sha256()
    for chunk in stream(TOTAL):
        h.update(chunk)
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "samples": len(sampled),
                      "size": res.size, "sha_ok": res.sha256 == h.hexdigest(),
                      "tier": res.tier, "path": res.path}))
    svc.close()
""")


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_ephemeral_200_mib_streams_with_flat_memory(tmp_path, kind):
    """A fresh process persists 200 MiB from a generator; its peak RSS grows < 50 MB."""
    total = 200 * MiB
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(home), str(REPO), str(total), kind],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["size"] == total and out["sha_ok"] and out["tier"] == "ephemeral"
    assert out["samples"] > 1
    assert (home / out["path"]).stat().st_size == total
    assert list((home / "tmp").iterdir()) == []
    growth_mb = (out["peak_kb"] - out["baseline_kb"]) * 1024 / 1e6
    assert growth_mb < 50, f"peak RSS grew by {growth_mb:.1f} MB during a 200 MiB persist"

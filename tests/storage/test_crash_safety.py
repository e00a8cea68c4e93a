"""SIGKILL at every step of persist, bulk persist, slot rewrite, delete and gc; then restart and doctor.

Fault points are compiled in (storage/faults.py) and armed per process by
RESOURCES_FAULT, so each kill lands exactly at the step named. After the kill, a new
service starts (running recovery), doctor must report nothing, and every acknowledged
persist must be present, readable with the right sha256, and searchable.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_api import doctor
from search_api.service import ResourceService
from storage.config import Settings

DRIVER = Path(__file__).resolve().parents[1] / "crash_driver.py"
WS = "ws-crash"

CASES = [
    ("persist", "persist.streaming@3"),
    ("persist", "persist.after_fsync"),
    ("persist", "persist.after_extract"),
    ("persist", "persist.before_intent"),
    ("persist", "persist.before_publish"),
    ("persist", "persist.after_publish"),
    ("persist", "persist.after_commit"),
    ("persist", "index.before_commit"),
    ("persist", "index.after_commit"),
    ("durable", "index.before_commit"),
    ("durable", "index.after_commit"),
    ("durable", "index.after_position"),
    ("bulk", "persist.after_extract@3"),
    ("bulk", "persist.before_intent"),
    ("bulk", "persist.before_publish"),
    ("bulk", "persist.after_publish"),
    ("bulk", "persist.after_commit"),
    ("bulk", "index.before_commit"),
    ("rewrite", "persist.after_fsync"),
    ("rewrite", "persist.before_intent"),
    ("rewrite", "persist.before_publish"),
    ("rewrite", "persist.after_publish"),
    ("rewrite", "persist.after_commit"),
    ("rewrite", "index.before_commit"),
    ("delete", "delete.after_record"),
    ("delete", "delete.after_blob"),
    ("delete", "index.before_commit"),
    ("gc", "delete.after_record"),
    ("gc", "gc.after_batch"),
    ("gc", "index.after_commit"),
    ("overrides", "index.before_commit"),
]


def run_driver(home: Path, ackfile: Path, op: str, arg: str = "", fault: str | None = None,
               clock: Path | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    if fault:
        env["RESOURCES_FAULT"] = fault
    if clock:
        env["RESOURCES_CLOCK_FILE"] = str(clock)
    proc = subprocess.run([sys.executable, str(DRIVER), str(home), str(ackfile), op, arg],
                          env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


def acked(ackfile: Path) -> list[dict]:
    if not ackfile.exists():
        return []
    return [json.loads(line) for line in ackfile.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("op,point", CASES, ids=[f"{o}-{p}" for o, p in CASES])
def test_sigkill_then_recovery(tmp_path: Path, op: str, point: str) -> None:
    home, ackfile, clock = tmp_path / "home", tmp_path / "acks.jsonl", tmp_path / "clock"
    clock.write_text("1900000000")
    assert run_driver(home, ackfile, "setup", clock=clock) == 0
    before = acked(ackfile)
    target = ""
    if op in ("delete", "overrides"):
        target = before[0]["uri"]
    if op == "gc":
        clock.write_text("1900000100")      # the three expiring resources are now past due
    code = run_driver(home, ackfile, op, target, fault=point, clock=clock)
    assert code == -9, f"the fault point {point} was not reached (exit {code})"

    os.environ["RESOURCES_CLOCK_FILE"] = str(clock)
    try:
        svc = ResourceService(Settings.from_env(home), log=lambda m: None)
        try:
            report = doctor.run(svc)
            assert report["ok"], report["problems"]
            deleted = {target} if op == "delete" else set()
            for entry in acked(ackfile):
                if entry["uri"] in deleted or entry["word"].startswith("expiring") and op == "gc":
                    continue
                res = svc.get(WS, entry["uri"])
                data = b"".join(svc.read(WS, entry["uri"])[3])
                if entry["word"] == "slotword":
                    # the slot may hold the old or the new bytes, never a mix
                    assert hashlib.sha256(data).hexdigest() == res.sha256
                    continue
                assert hashlib.sha256(data).hexdigest() == entry["sha256"] == res.sha256
                if op == "overrides" and entry["uri"] == target:
                    continue
                hits = svc.search(WS, entry["word"])
                assert [r.uri for r in hits.items] == [entry["uri"]], entry["word"]
            if op == "gc":
                # an interrupted sweep is finished at the next start
                assert svc.search(WS, "expiring0").total == 0
                assert all(r.expires_at > svc.now() for r in svc.catalog.resources.all())
        finally:
            svc.close()
    finally:
        del os.environ["RESOURCES_CLOCK_FILE"]

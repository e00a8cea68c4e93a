"""Issue 14, item 4: symbolic links in a bound slot folder never leak the data home.

`watch` and `doctor --repair` neither follow nor adopt links (to files or folders), never
touch anything outside the workspace's slot folders, and never quarantine live catalog or
index files."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from indexer.watch import SlotWatcher
from server import RESOURCES, base_env

WS = "ws-acme"


def _plant_links(home: Path, folder: Path, other_blob: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "real.txt").write_bytes(b"a genuine symlinktestword file\n")
    os.symlink(home, folder / "home-link")                      # folder link into the home
    os.symlink(home / "catalog.db", folder / "catalog-link.db")
    os.symlink(home / "secret.key", folder / "secret-link")
    os.symlink(other_blob, folder / "other-ws-blob")
    os.symlink(home / "index", folder / "index-link")


def _live_files(home: Path) -> dict[str, int]:
    out = {}
    for p in [home / "catalog.db", home / "secret.key", *(home / "index").rglob("*")]:
        if p.is_file():
            out[str(p)] = p.stat().st_size
    return out


def test_watch_never_follows_or_adopts_links(service, home):
    other = service.persist("ws-other", {"filename": "private.txt"},
                            b"other workspace secret\n").resource
    other_blob = home / other.path
    service.bind_slot(WS, "inbox", "drop")
    folder = home / "workspaces" / WS / "storage" / "drop"
    _plant_links(home, folder, other_blob)
    w = SlotWatcher(service, log=lambda m: None, debounce_ms=300, step_ms=50,
                    check_interval=0.3)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: (w.run(stop), service.catalog.close()),
                              daemon=True)
    thread.start()
    assert w.ready.wait(10)
    # A link made while watching is ignored too.
    os.symlink(home / "catalog.db-wal", folder / "wal-link")
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    paths = [r.path_under_root for r in service.list(WS, {"slot": "inbox"}).items]
    assert paths == ["real.txt"], paths
    assert service.search(WS, "secret").total == 0


def test_doctor_repair_never_adopts_or_moves_links_or_live_files(service, home, tmp_path):
    other = service.persist("ws-other", {"filename": "private.txt"},
                            b"other workspace secret\n").resource
    service.persist(WS, {"filename": "mine.txt"}, b"mine symlinkdoctorword\n")
    service.bind_slot(WS, "inbox", "drop")
    folder = home / "workspaces" / WS / "storage" / "drop"
    _plant_links(home, folder, home / other.path)
    service.close()
    before = _live_files(home)
    env = base_env(home) | {"RESOURCES_WORKSPACE": WS}
    proc = subprocess.run([RESOURCES, "doctor", "--repair", "--format", "json"], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    for name in ("catalog-link", "secret-link", "other-ws-blob", "index-link", "home-link"):
        assert name not in text, (name, text[:2000])
    # The links are where they were; the live files were not moved anywhere.
    for name in ("catalog-link.db", "secret-link", "other-ws-blob", "index-link", "home-link"):
        assert (folder / name).is_symlink()
    after = _live_files(home)
    assert set(before) <= set(after)
    assert not (home / "quarantine").exists() or not any(
        "catalog" in p.name or "meta.json" in p.name or "secret" in p.name
        for p in (home / "quarantine").iterdir())
    # The home still works: a second doctor run is clean.
    proc = subprocess.run([RESOURCES, "doctor", "--format", "json"], env=env,
                          capture_output=True, timeout=120)
    assert json.loads(proc.stdout)["data"]["ok"] is True, proc.stdout[:2000]


def test_persist_through_a_linked_slot_folder_is_refused(service, home, tmp_path):
    from storage.errors import InvalidPath
    import pytest
    outside = tmp_path / "outside"
    outside.mkdir()
    service.bind_slot(WS, "linked", "lnk")
    (home / "workspaces" / WS / "storage").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, home / "workspaces" / WS / "storage" / "lnk")
    with pytest.raises(InvalidPath):
        service.persist(WS, {"slot": "linked", "filename": "x.txt"}, b"x")
    assert list(outside.iterdir()) == []

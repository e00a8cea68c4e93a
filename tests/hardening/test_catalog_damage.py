"""Issue 14, item 9: doctor sees catalog corruption; a damaged catalog is a clear error,
never a traceback, for serve, the CLI and doctor."""
from __future__ import annotations

import json
import subprocess

from search_api.service import ResourceService
from server import RESOURCES, base_env, free_port
from storage.config import Settings


def _home_with_data(tmp_path):
    home = tmp_path / "home"
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    for i in range(300):
        svc.persist("ws-acme", {"filename": f"f{i}.txt", "tags": [f"t{i}"]},
                    f"file number {i} ".encode() * 20)
    svc.catalog.database.checkpoint()
    svc.close()
    return home


def test_doctor_reports_an_overwritten_page(tmp_path):
    home = _home_with_data(tmp_path)
    db = home / "catalog.db"
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(size // 2 - (size // 2) % 4096)
        fh.write(b"\xa5" * 8192)
    env = base_env(home) | {"RESOURCES_WORKSPACE": "ws-acme"}
    proc = subprocess.run([RESOURCES, "doctor", "--format", "json"], env=env,
                          capture_output=True, timeout=120)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert proc.returncode == 1
    out = (proc.stdout or proc.stderr).decode()
    assert "catalog-damaged" in out or "catalog_damaged" in out, out[:2000]


def test_zeroed_header_is_a_clear_error_for_serve_cli_and_doctor(tmp_path):
    home = _home_with_data(tmp_path)
    db = home / "catalog.db"
    with open(db, "r+b") as fh:
        fh.write(b"\x00" * 100)
    env = base_env(home) | {"RESOURCES_WORKSPACE": "ws-acme"}
    for args in (["doctor"], ["search", "file"], ["serve", "--port", str(free_port())]):
        proc = subprocess.run([RESOURCES, *args, *(["--format", "json"] if args[0] != "serve"
                                                  else [])],
                              env=env, capture_output=True, timeout=60)
        assert proc.returncode == 1, (args, proc.returncode, proc.stderr[-500:])
        text = (proc.stderr + proc.stdout).decode()
        assert "Traceback" not in text, text[-2000:]
        assert "damaged" in text, text[-1000:]

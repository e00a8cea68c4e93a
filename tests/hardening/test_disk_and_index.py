"""Issue 14, items 7 and 14: a full disk is a 507 with nothing half-written; a deleted
live index is rebuilt instead of silently dropping writes; killed reindexes leave no
directories behind."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from server import error_body, ok_body, start_server, stop_server, upload


@pytest.fixture
def small_disk(tmp_path):
    """A real 6 MiB filesystem (tmpfs) for the data home."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_is_507_and_nothing_half_written(small_disk, tmp_path):
    server = start_server(tmp_path / "srv", extra_env={"RESOURCES_HOME": str(small_disk / "home")})
    server.home = small_disk / "home"
    try:
        with server.client("write") as c:
            kept = ok_body(upload(c, b"kept before the disk filled\n",
                                  {"filename": "kept.txt"}), 201)["data"]
            statuses = []
            for i in range(40):
                r = upload(c, os.urandom(512 * 1024), {"filename": f"fill{i}.bin"})
                statuses.append(r.status_code)
                if r.status_code == 507:
                    err = error_body(r, 507, "storage_full")
                    assert "full" in err["message"]
                    break
            assert 507 in statuses, statuses
            assert 500 not in statuses, statuses
            # Nothing half-written: no staged parts, no pending intents.
            assert not list((server.home / "tmp").glob("*.part"))
            # What was there is still readable, and the service still answers.
            assert c.get("/v1/ws-acme/resources/content",
                         params={"uri": kept["uri"]}).content == b"kept before the disk filled\n"
            assert c.get("/healthz").status_code in (200, 503)
    finally:
        stop_server(server)
    from search_api.service import ResourceService
    from storage.config import Settings
    # free space, then the next start is clean
    for p in (server.home / "workspaces").rglob("fill*"):
        p.unlink()
    svc = ResourceService(Settings.from_env(server.home), log=lambda m: None)
    try:
        assert svc.catalog.intents.pending() == []
    finally:
        svc.close()


def test_deleted_live_index_is_rebuilt_while_serving(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        with server.client("write") as c:
            ok_body(upload(c, b"before the loss indexlossone\n", {"filename": "a.txt"}), 201)
            live = server.home / os.readlink(server.home / "index")
            shutil.rmtree(live)
            ok_body(upload(c, b"after the loss indexlosstwo\n", {"filename": "b.txt"}), 201)
            deadline = time.monotonic() + 10
            while True:
                got = ok_body(c.get("/v1/ws-acme/resources/search",
                                    params={"q": "indexlossone OR indexlosstwo"}))
                if got["meta"]["total"] == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert got["meta"]["total"] == 2
            assert c.get("/readyz").json()["data"]["checks"]["index"]["ok"] is True
    finally:
        stop_server(server)


def test_killed_reindex_directories_are_removed_at_open(tmp_path):
    from search_api.service import ResourceService
    from storage.config import Settings
    home = tmp_path / "home"
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    svc.persist("ws", {"filename": "a.txt"}, b"a")
    svc.close()
    stray = home / f"index-{uuid.uuid4().hex[:12]}"
    stray.mkdir()
    (stray / "meta.json").write_text("{}")
    old = time.time() - 3600
    os.utime(stray, (old, old))
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        assert not stray.exists()
    finally:
        svc.close()

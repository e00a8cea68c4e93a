"""/readyz tells the truth: 503 naming the failing check when the index directory is
gone, the staging folder of a connection is gone, the catalog cannot take a write, the
disk is full (a real tmpfs filled up) or below the threshold; 200 again once fixed.
/healthz stays 200 throughout: the process is alive."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from server import base_env, cli, error_body, ok_body, start_server, stop_server, upload


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ready"))
    yield server
    stop_server(server)


def readyz(server) -> httpx.Response:
    return httpx.get(f"{server.base}/readyz", timeout=30)


def assert_not_ready(server, check: str) -> dict:
    r = readyz(server)
    err = error_body(r, 503, "not_ready")
    assert check in err["details"]["failing"], err
    assert err["message"].startswith("not ready: ") and check in err["message"]
    assert httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200
    return err


def test_ready_when_everything_works(srv):
    data = ok_body(readyz(srv))["data"]
    assert data["ready"] is True
    assert set(data["checks"]) == {"catalog", "connection:platform", "disk", "index"}
    assert all(c["ok"] for c in data["checks"].values())
    assert "documents" not in str(data)          # no tenant figures for anonymous callers


def test_index_directory_removed_then_reindexed(srv):
    with srv.client("write") as c:
        ok_body(upload(c, b"indexed\n", {"filename": "i.txt"}), 201)
    link = srv.home / "index"
    target = link.parent / os.readlink(link)
    shutil.rmtree(target)
    # The index heals itself (the follower rebuilds a deleted live directory from the
    # catalog), so readiness either names the missing index or is already back.
    r = readyz(srv)
    if r.status_code == 503:
        err = r.json()["error"]
        assert "index" in err["details"]["failing"]
        assert "index" in err["details"]["checks"]["index"]["detail"]
    cli("reindex", env=base_env(srv.home))
    assert ok_body(readyz(srv))["data"]["ready"] is True


def test_staging_folder_of_the_connection_removed(srv):
    tmp = srv.home / "tmp"
    moved = srv.home / "tmp-moved"
    tmp.rename(moved)
    try:
        assert_not_ready(srv, "connection:platform")
    finally:
        moved.rename(tmp)
    assert ok_body(readyz(srv))["data"]["ready"] is True


def test_catalog_that_cannot_take_a_write(srv):
    conn = sqlite3.connect(srv.home / "catalog.db", timeout=5, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")           # another writer holds the lock
    try:
        err = assert_not_ready(srv, "catalog")
        assert "catalog not writable" in err["message"]
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert ok_body(readyz(srv))["data"]["ready"] is True


def test_free_space_threshold(tmp_path):
    server = start_server(tmp_path / "s", extra_env={
        "RESOURCES_READY_MIN_FREE_BYTES": str(10 ** 18)})      # an exabyte: never met
    try:
        err = assert_not_ready(server, "disk")
        assert "below the threshold" in err["details"]["checks"]["disk"]["detail"]
    finally:
        stop_server(server)


@pytest.fixture
def tmpfs(tmp_path) -> Path:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_on_a_real_tmpfs(tmpfs):
    server = start_server(tmpfs / "s", extra_env={
        "RESOURCES_READY_MIN_FREE_BYTES": str(4 * 1024 * 1024)})
    try:
        assert ok_body(readyz(server))["data"]["ready"] is True
        filler = tmpfs / "filler"
        with open(filler, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * (1024 * 1024))
            except OSError:
                pass                            # ENOSPC: the disk is full
        err = assert_not_ready(server, "disk")
        assert err["details"]["checks"]["disk"]["free_bytes"] < 4 * 1024 * 1024
        filler.unlink()
        assert ok_body(readyz(server))["data"]["ready"] is True
    finally:
        stop_server(server)


def test_index_lag_over_the_threshold_and_caught_up(tmp_path):
    """Another process holds the index writer: persists still succeed (the outbox keeps
    the change), /readyz names the lag; once the writer is free the background catches
    up and /readyz is 200 again."""
    import time

    import tantivy

    from indexer.schema import build_schema
    server = start_server(tmp_path / "s", extra_env={
        "RESOURCES_READY_MAX_INDEX_LAG": "0", "RESOURCES_INDEX_LOCK_WAIT_SECONDS": "0.2"})
    try:
        index = tantivy.Index(build_schema(), str(server.home / "index"), reuse=True)
        writer = index.writer(15_000_000, 1)          # holds the directory lock
        try:
            with server.client("write") as c:
                ok_body(upload(c, b"waits for the index\n", {"filename": "w.txt"}), 201)
            err = assert_not_ready(server, "index")
            assert "wait for the index" in err["details"]["checks"]["index"]["detail"]
            assert err["details"]["checks"]["index"]["lag_changes"] >= 1
        finally:
            writer.rollback()
            writer.wait_merging_threads()             # releases the lock
        deadline = time.monotonic() + 30
        while readyz(server).status_code != 200:
            assert time.monotonic() < deadline, readyz(server).text
            time.sleep(0.1)
    finally:
        stop_server(server)

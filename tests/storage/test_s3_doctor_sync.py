"""doctor and sync-slot on an S3 connection (real SeaweedFS): abandoned multipart
uploads, objects the catalog does not know, objects gone behind a record's back."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from search_api.service import ResourceService
from server import base_env, cli
from storage.config import Settings
from test_s3_connection import CRASH_DRIVER, ROOT, WS, assert_bucket_matches_catalog, \
    uploads_left, write_connection

MiB = 1024 * 1024
SLOT_KEY = f"workspaces/{WS}/storage/reports/acme"
LONG = "bad\x01name.txt"           # a control character: no persist could put it there


@pytest.fixture
def home(tmp_path: Path, seaweedfs) -> Path:
    home = tmp_path / "home"
    write_connection(home, seaweedfs, f"d/{uuid.uuid4().hex}", part_size=5 * MiB)
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    svc.bind_slot(WS, "archive", "reports/acme", connection="s3")
    svc.close()
    return home


def env_for(home: Path) -> dict:
    return {**base_env(home), "RESOURCES_WORKSPACE": WS}


def put_raw(home: Path, key: str, body: bytes) -> None:
    """Another program writing into the bucket, past the service."""
    svc = ResourceService(Settings.from_env(home), log=lambda m: None, recover=False)
    try:
        b = svc.backends["s3"]
        b.client.put_object(Bucket=b.bucket, Key=b.prefix + key, Body=body)
    finally:
        svc.close()


def test_sync_slot_adopts_new_objects_under_the_root_only(home: Path) -> None:
    put_raw(home, f"{SLOT_KEY}/inbox/2026/note.txt", b"a narwhal memo from elsewhere\n")
    put_raw(home, f"{SLOT_KEY}/{LONG}", b"a segment over 255 bytes")
    put_raw(home, f"workspaces/{WS}/storage/reports/acme-other/x.txt", b"narwhal outside")
    env = env_for(home)
    out = json.loads(cli("sync-slot", "archive", "--format", "json", env=env).stdout)["data"]
    assert len(out["adopted"]) == 1
    assert [s["path-under-root"] for s in out["skipped"]] == [LONG]
    found = json.loads(cli("search", "narwhal", "--format", "json", env=env).stdout)
    (item,) = found["data"]["items"]
    assert item["uri"] == out["adopted"][0]
    assert (item["storage-backend"], item["path-under-root"]) == ("s3", "inbox/2026/note.txt")
    again = json.loads(cli("sync-slot", "archive", "--format", "json", env=env).stdout)
    assert again["data"]["adopted"] == []
    got = cli("read", item["uri"], env=env).stdout
    assert got == b"a narwhal memo from elsewhere\n"


def test_doctor_reports_and_repairs_s3_leftovers(home: Path) -> None:
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    kept = svc.persist(WS, {"slot": "archive", "filename": "kept.txt"}, b"kept").resource
    lost = svc.persist(WS, {"slot": "archive", "filename": "lost.txt"}, b"lost").resource
    b = svc.backends["s3"]
    b.client.delete_object(Bucket=b.bucket, Key=b.object_key(lost.path))
    svc.close()
    put_raw(home, f"workspaces/{WS}/persist/stray.bin", b"nobody's")
    put_raw(home, f"{SLOT_KEY}/dropped/in.txt", b"dropped in by a tool")
    env = {**env_for(home), "RESOURCES_FAULT": "persist.streaming@9"}
    crashed = subprocess.run([sys.executable, "-c", CRASH_DRIVER.format(
        root=str(ROOT), home=str(home))], env=env, capture_output=True, timeout=120)
    assert crashed.returncode == -9

    env = env_for(home)
    report = cli("doctor", "--format", "json", env=env, check=False)
    assert report.returncode == 1
    data = json.loads(report.stdout)["data"]
    kinds = sorted((p["kind"], p["subject"].split(":")[0]) for p in data["problems"])
    assert kinds == [("missing-blob", lost.uri.split(":")[0]), ("orphan-blob", "s3"),
                     ("orphan-blob", "s3"), ("temp-leftover", "s3")]

    fixed = json.loads(cli("doctor", "--repair", "--format", "json", env=env).stdout)["data"]
    assert fixed["ok"] is True
    actions = " ".join(r["action"] for r in fixed["repaired"])
    assert "registered as" in actions and "quarantined at s3:_quarantine/" in actions
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        assert uploads_left(svc.backends["s3"]) == []
        assert svc.get(WS, kept.uri).size == 4
        names = {r.filename for r in svc.catalog.resources.all()}
        assert names == {"kept.txt", "in.txt"}
        assert_bucket_matches_catalog(svc)           # lists workspaces/ only
        assert [o.key.split("-", 1)[1] for o in svc.backends["s3"].list("_quarantine")] == \
            [f"workspaces__{WS}__persist__stray.bin"]
    finally:
        svc.close()


def test_watch_says_it_follows_local_folders_only(home: Path) -> None:
    from indexer.watch import SlotWatcher
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        said: list[str] = []
        watcher = SlotWatcher(svc, log=said.append)
        assert watcher.roots() == [] and watcher.roots() == []     # nothing to follow
        assert len(said) == 1                                       # told once per slot
        assert "'archive'" in said[0] and "sync-slot archive" in said[0]
    finally:
        svc.close()

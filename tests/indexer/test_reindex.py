"""Issue 4: the index follows rewrites and deletes, rebuilds, and survives other writers."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import tantivy

from search_api.service import ResourceService
from storage.records import new_id

WS = "ws-acme"
REPO = Path(__file__).resolve().parents[2]


def uris(page):
    return [r.uri for r in page.items]


def test_slot_rewrite_replaces_the_index_entry(service):
    service.bind_slot(WS, "archive", "reports/acme")
    spec = {"slot": "archive", "path": "exports", "filename": "summary.txt"}
    first = service.persist(WS, spec, b"the oldcontentword report\n").resource
    second = service.persist(WS, spec, b"the newcontentword report\n").resource
    assert second.uri == first.uri and second.version == first.version + 1
    assert service.search(WS, "oldcontentword").total == 0
    assert uris(service.search(WS, "newcontentword")) == [first.uri]
    assert uris(service.search(WS, "summary.txt")) == [first.uri]
    assert service.index.count() == 1
    assert service.list(WS).total == 1


def test_delete_removes_from_search(service):
    res = service.persist(WS, {"filename": "gone.txt"}, b"the deletedword body\n").resource
    keep = service.persist(WS, {"filename": "kept.txt"}, b"the keptword body\n").resource
    assert uris(service.search(WS, "deletedword")) == [res.uri]
    service.delete(WS, res.uri)
    assert service.search(WS, "deletedword").total == 0
    assert service.search(WS, "gone.txt").total == 0
    assert uris(service.list(WS)) == [keep.uri]
    assert service.index.count() == 1


def _snapshot(service, queries):
    out = {}
    for q in queries:
        page = service.search(WS, q, limit=100)
        out[q] = (page.total, sorted(uris(page)))
    return out


def _load(service, fixtures_dir):
    service.bind_slot(WS, "archive", "reports/acme")
    with service.batch():
        for name in ("report-multipage.pdf", "long.txt", "image.png", "notes.md", "data.csv"):
            with open(fixtures_dir / name, "rb") as fh:
                service.persist(WS, {"slot": "archive", "path": "exports/2026",
                                     "filename": name}, fh)
        res = service.persist(WS, {"filename": "memo.txt"}, b"originalpelican\n").resource
    service.update_overrides(WS, res.uri, {"text": "overridecormorant", "tags": ["reviewed"]})


QUERIES = ["zephyrquasar", "earlyfalcon", "latewalrus", "pngsecretword", "image.png",
           "markdownheron", "csvlatitude", 'storage_root:"reports/acme"', "",
           "originalpelican", "overridecormorant", "tags:reviewed"]


def test_reindex_gives_the_same_results(service, fixtures_dir):
    _load(service, fixtures_dir)
    before = _snapshot(service, QUERIES)
    old_target = os.readlink(service.settings.index_dir)
    assert service.reindex() == 6
    assert os.readlink(service.settings.index_dir) != old_target
    assert not (service.settings.home / old_target).exists()
    assert _snapshot(service, QUERIES) == before
    assert service.index.count() == 6


def test_deleted_index_is_rebuilt_at_next_start(settings, fixtures_dir):
    service = ResourceService(settings, log=lambda msg: None)
    _load(service, fixtures_dir)
    before = _snapshot(service, QUERIES)
    service.close()
    link = settings.index_dir
    shutil.rmtree(link.parent / os.readlink(link))
    link.unlink()
    logs: list[str] = []
    service = ResourceService(settings, log=logs.append)
    try:
        assert any("rebuilding" in m for m in logs), logs
        assert link.is_symlink() and link.resolve().is_dir()
        assert _snapshot(service, QUERIES) == before
    finally:
        service.close()


def _bulk_records(service, n):
    """n records: one real persist, then n - 1 copies straight into the catalog in one
    transaction (what is under test is the rebuild, not 2,000 fsyncs), then one sync."""
    seed = service.persist(WS, {"filename": "doc-seed.txt"},
                           b"bulkword seed of the reindex corpus\n").resource
    with service.lifecycle.lock.held(), service.catalog.transaction() as conn:
        seq = service.catalog.changes.next_seq(conn)
        for i in range(n - 1):
            res = dataclasses.replace(seed, id=new_id(), filename=f"doc-{i:04d}.txt",
                                      display_name=f"doc-{i:04d}.txt",
                                      path=f"{seed.path}-{i}", seq=seq + i)
            service.catalog.resources.upsert(conn, res, f"bulkword item{i} of the reindex corpus")
    service.index.sync()


def test_search_answers_while_a_reindex_runs(service):
    _bulk_records(service, 2000)
    assert service.search(WS, "bulkword").total == 2000
    done = threading.Event()
    errors: list[BaseException] = []

    def rebuild():
        try:
            for _ in range(3):
                service.reindex()
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            service.catalog.close()
            done.set()

    thread = threading.Thread(target=rebuild)
    searches = 0
    thread.start()
    while not done.is_set():
        page = service.search(WS, "bulkword", limit=10)
        assert page.total == 2000 and len(page.items) == 10
        assert service.list(WS, limit=5).total == 2000
        searches += 1
    thread.join()
    assert not errors, errors
    assert searches > 0
    assert service.search(WS, "item1234").total == 1
    assert service.index.count() == 2000


def test_second_process_while_this_one_holds_the_writer(service, home, tmp_path):
    first = service.persist(WS, {"filename": "ours-1.txt"}, b"firstprocessword\n").resource
    body = tmp_path / "theirs.txt"
    body.write_bytes(b"secondprocessword\n")
    env = {**os.environ, "RESOURCES_HOME": str(home), "RESOURCES_WORKSPACE": WS,
           "RESOURCES_INDEX_LOCK_WAIT_SECONDS": "0.5"}
    env.pop("RESOURCES_API_URL", None)
    writer = service.index._current().writer(50_000_000, 1)   # this process holds the writer
    try:
        proc = subprocess.run([sys.executable, "-m", "search_api.cli", "persist", str(body),
                               "--format", "json"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        theirs = json.loads(proc.stdout)["data"]
        # While the writer is held, our own persist is saved and queued, not lost.
        service.index.lock_wait = 0.2
        ours = service.persist(WS, {"filename": "ours-2.txt"}, b"latewriteword\n").resource
    finally:
        writer.rollback()
        writer.wait_merging_threads()          # releases the directory lock
        service.index.lock_wait = service.settings.index_lock_wait_seconds
    assert service.catalog.changes.backlog() >= 2
    service.index.sync()
    assert service.catalog.changes.backlog() == 0
    assert uris(service.search(WS, "firstprocessword")) == [first.uri]
    assert uris(service.search(WS, "secondprocessword")) == [theirs["uri"]]
    assert uris(service.search(WS, "latewriteword")) == [ours.uri]
    assert service.index.count() == 3
    # The directory is intact for a fresh reader and a fresh service (no rebuild).
    fresh = tantivy.Index.open(str(service.settings.index_dir))
    assert fresh.searcher().num_docs == 3
    logs: list[str] = []
    other = ResourceService(service.settings, log=logs.append)
    try:
        assert not any("rebuilding" in m for m in logs), logs
        assert other.search(WS, "secondprocessword").total == 1
    finally:
        other.close()


def test_second_process_writes_are_picked_up_by_this_one(service, home, tmp_path):
    """The other process indexes on its own; this process sees it without a restart."""
    body = tmp_path / "theirs.txt"
    body.write_bytes(b"crossprocessword\n")
    env = {**os.environ, "RESOURCES_HOME": str(home), "RESOURCES_WORKSPACE": WS}
    proc = subprocess.run([sys.executable, "-m", "search_api.cli", "persist", str(body),
                           "--format", "json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    uri = json.loads(proc.stdout)["data"]["uri"]
    deadline = time.monotonic() + 5
    while True:
        found = uris(service.search(WS, "crossprocessword"))
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found == [uri]

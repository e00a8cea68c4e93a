"""`resources watch`: files other programs write into bound slot folders follow the index."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer.watch import SlotWatcher
from storage.errors import NotFound

WS = "ws-acme"
REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 10.0):
    """Poll until predicate() is truthy or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def found(service, q):
    return [r for r in service.search(WS, q).items]


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:      # another program writing in place
        fh.write(data)


@pytest.fixture
def folder(service, home):
    service.bind_slot(WS, "inbox", "drop/acme")
    return home / "workspaces" / WS / "storage" / "drop" / "acme"


@pytest.fixture
def watcher(service, folder):
    w = SlotWatcher(service, log=lambda msg: None, debounce_ms=400, step_ms=50,
                    check_interval=0.3)
    stop = threading.Event()

    def target():
        try:
            w.run(stop)
        finally:
            service.catalog.close()     # this thread's connection

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert w.ready.wait(10), "watcher did not start"
    yield w
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_created_file_becomes_searchable(service, folder, watcher):
    write(folder / "reports" / "q1.txt", b"the watchedheron report\n")
    items = wait_for(lambda: found(service, "watchedheron"))
    assert len(items) == 1
    res = items[0]
    assert res.slot == "inbox" and res.storage_root == "drop/acme"
    assert res.path_under_root == "reports/q1.txt" and res.filename == "q1.txt"
    assert res.version == 1 and res.type == "file"
    assert b"".join(service.read(WS, res.uri)[3]) == b"the watchedheron report\n"
    assert [r.uri for r in service.search(WS, None, {"slot": "inbox",
                                                     "path-prefix": "reports"}).items] == [res.uri]


def test_modified_file_is_updated_in_place(service, folder, watcher):
    path = folder / "notes.txt"
    write(path, b"first watchedversionone\n")
    first = wait_for(lambda: found(service, "watchedversionone"))[0]
    service.update_overrides(WS, first.uri, {"tags": ["kept-tag"]})
    write(path, b"second watchedversiontwo\n")
    items = wait_for(lambda: found(service, "watchedversiontwo"))
    assert [r.uri for r in items] == [first.uri]
    assert items[0].version == 2
    assert service.search(WS, "watchedversionone").total == 0
    assert service.search(WS, None, {"tag": "kept-tag"}).total == 1   # overrides carried over
    assert service.index.count() == 1
    # Persisting rewrote the file itself: that must not start a loop of new versions.
    sentinel = folder / "sentinel.txt"
    write(sentinel, b"watchedsentinel\n")
    assert wait_for(lambda: found(service, "watchedsentinel"))
    assert service.get(WS, first.uri).version == 2
    assert path.read_bytes() == b"second watchedversiontwo\n"


def test_deleted_file_is_removed(service, folder, watcher):
    path = folder / "old" / "gone.txt"
    write(path, b"the watchedgoner text\n")
    res = wait_for(lambda: found(service, "watchedgoner"))[0]
    path.unlink()
    assert wait_for(lambda: service.search(WS, "watchedgoner").total == 0)
    with pytest.raises(NotFound):
        service.get(WS, res.uri)
    assert service.index.count() == 0


def test_temporary_files_are_ignored(service, folder, watcher):
    write(folder / "upload.bin.part", b"watchedpartial bytes\n")
    write(folder / "tmp" / "scratch.txt", b"watchedscratch bytes\n")
    write(folder / "real.txt", b"watchedreal bytes\n")
    assert wait_for(lambda: found(service, "watchedreal"))
    assert service.search(WS, "watchedpartial").total == 0
    assert service.search(WS, "watchedscratch").total == 0
    assert service.list(WS).total == 1


def test_service_persists_into_the_slot_are_not_duplicated(service, folder, watcher):
    res = service.persist(WS, {"slot": "inbox", "filename": "api.txt"},
                          b"watchedapiword\n").resource
    write(folder / "sentinel.txt", b"watchedsentinel\n")
    assert wait_for(lambda: found(service, "watchedsentinel"))
    assert service.get(WS, res.uri).version == 1
    assert service.list(WS).total == 2
    service.delete(WS, res.uri)            # an API delete: the watcher has nothing to do
    write(folder / "sentinel2.txt", b"watchedsentineltwo\n")
    assert wait_for(lambda: found(service, "watchedsentineltwo"))
    assert service.list(WS).total == 2


def test_files_present_before_the_watcher_starts_are_registered(service, folder):
    write(folder / "early.txt", b"watchedearlybird\n")
    w = SlotWatcher(service, log=lambda msg: None, check_interval=0.3)
    w.run(once_for=0.5)
    assert w.stats.registered == 1
    assert len(found(service, "watchedearlybird")) == 1


def test_resources_watch_command(service, folder, home):
    env = {**os.environ, "RESOURCES_HOME": str(home), "RESOURCES_WORKSPACE": WS}
    env.pop("RESOURCES_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "search_api.cli", "watch", "--format", "json"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()             # "watch: watching 1 folder(s): ..."
        assert "watching 1 folder" in line, line
        write(folder / "cli.txt", b"the watchedbycli words\n")
        assert wait_for(lambda: found(service, "watchedbycli"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out)["data"]["registered"] == 1


def test_removed_folder_removes_the_records_below_it(service, folder, watcher):
    import shutil
    write(folder / "batch" / "a.txt", b"watchedbatchword one\n")
    write(folder / "batch" / "deep" / "b.txt", b"watchedbatchword two\n")
    assert wait_for(lambda: service.search(WS, "watchedbatchword").total == 2)
    shutil.rmtree(folder / "batch")
    assert wait_for(lambda: service.search(WS, "watchedbatchword").total == 0)
    assert service.list(WS).total == 0


def test_watching_survives_the_root_folder_being_tidied_away(service, folder, watcher):
    res = service.persist(WS, {"slot": "inbox", "filename": "only.txt"}, b"x\n").resource
    service.delete(WS, res.uri)       # the last file: the delete tidies empty folders away
    write(folder / "after.txt", b"watchedafterword\n")
    assert wait_for(lambda: found(service, "watchedafterword"))


def test_part_file_renamed_into_place_and_moved_in_folder(service, folder, watcher, tmp_path):
    write(folder / "report.pdf.part", b"watchedrenamedword\n")
    os.rename(folder / "report.pdf.part", folder / "report.txt")
    outside = tmp_path / "outside" / "bundle"
    write(outside / "inner" / "x.txt", b"watchedmovedinword\n")
    os.rename(outside, folder / "bundle")
    items = wait_for(lambda: found(service, "watchedrenamedword"))
    assert [r.path_under_root for r in items] == ["report.txt"] and items[0].version == 1
    moved = wait_for(lambda: found(service, "watchedmovedinword"))
    assert [r.path_under_root for r in moved] == ["bundle/inner/x.txt"]
    assert service.list(WS).total == 2

"""The service on a PostgreSQL catalog (RESOURCES_CATALOG_URL): the core flows end to end
on a real server — persist, search, delete, kv, keys, slot rewrite, the shared signing
secret and commit lock, and recovery of an intent a SIGKILL left behind."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_api import doctor
from search_api.service import ResourceService
from storage.config import Settings
from storage.errors import NotFound

WS = "ws-acme"
DRIVER = Path(__file__).resolve().parents[1] / "crash_driver.py"


def open_service(home: Path, url: str) -> ResourceService:
    settings = Settings.from_env(home)
    settings.catalog_url = url
    return ResourceService(settings, log=lambda m: None)


@pytest.fixture
def pg_service(tmp_path, pg_url):
    svc = open_service(tmp_path / "home", pg_url)
    yield svc
    svc.close()


def test_persist_search_delete_on_postgresql(pg_service, tmp_path):
    svc = pg_service
    assert svc.catalog.database.dialect == "postgresql"
    assert not (tmp_path / "home" / "catalog.db").exists()      # nothing in SQLite
    res = svc.persist(WS, {"filename": "a.txt", "tags": ["x"]}, b"alpha wordpgonly\n").resource
    assert svc.get(WS, res.uri).sha256 == hashlib.sha256(b"alpha wordpgonly\n").hexdigest()
    assert [r.uri for r in svc.search(WS, "wordpgonly").items] == [res.uri]
    assert b"".join(svc.read(WS, res.uri)[3]) == b"alpha wordpgonly\n"
    svc.delete(WS, res.uri)
    with pytest.raises(NotFound):
        svc.get(WS, res.uri)
    assert svc.search(WS, "wordpgonly").items == []
    assert doctor.run(svc)["ok"]


def test_slot_rewrite_counts_versions(pg_service):
    svc = pg_service
    svc.bind_slot(WS, "archive", "reports/acme")
    spec = {"slot": "archive", "path": "exports", "filename": "s.txt"}
    first = svc.persist(WS, spec, b"one wordfirst\n").resource
    second = svc.persist(WS, spec, b"two wordsecond\n").resource
    assert (second.uri, second.version) == (first.uri, 2)
    assert svc.search(WS, "wordfirst").items == []
    assert [r.uri for r in svc.search(WS, "wordsecond").items] == [first.uri]
    assert b"".join(svc.read(WS, first.uri)[3]) == b"two wordsecond\n"


def test_kv_and_keys(pg_service):
    svc = pg_service
    entry, created = svc.kv.set(WS, "run:1", {"ok": True}, ttl=600)
    assert created and svc.kv.get(WS, "run:1").value == {"ok": True}
    entry, created = svc.kv.set(WS, "run:1", {"ok": False}, if_version=1)
    assert not created and entry.version == 2
    items, total, _ = svc.kv.list(WS, "run:")
    assert total == 1 and items[0].value == {"ok": False}
    key_id, token = svc.keys.create(WS, ["resources.read"], "ci", svc.now())
    principal = svc.keys.authenticate(f"Bearer {token}")
    assert (principal.workspace, set(principal.scopes)) == (WS, {"resources.read"})


def test_signing_secret_and_commit_lock_are_shared(pg_url, tmp_path):
    """Two nodes (two homes) on one catalog: what one signs the other verifies, and the
    commit lock is the database's, not a file in either home."""
    a = open_service(tmp_path / "a", pg_url)
    b = open_service(tmp_path / "b", pg_url)
    try:
        assert a.signer.secret == b.signer.secret
        assert not (tmp_path / "a" / "secret.key").exists()
        token = a.signer.sign(WS, "res://v1/ws/ws-acme/file/X", 4_000_000_000)
        assert b.signer.sign(WS, "res://v1/ws/ws-acme/file/X", 4_000_000_000) == token
        assert type(a.lifecycle.lock).__name__ == "SessionLock"
        assert not (tmp_path / "a" / "locks" / "commit.lock").exists()
        # The lock excludes the other node: b cannot take it while a holds it.
        with a.lifecycle.lock.held():
            with b.catalog.database.try_session_lock(b.lifecycle.lock.key) as got:
                assert got is False
        with b.catalog.database.try_session_lock(b.lifecycle.lock.key) as got:
            assert got is True
    finally:
        a.close()
        b.close()


def test_an_intent_left_by_a_sigkill_is_recovered(tmp_path, pg_url):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env["RESOURCES_CATALOG_URL"] = pg_url
    ackfile = tmp_path / "acks"
    done = subprocess.run([sys.executable, str(DRIVER), str(home), str(ackfile), "setup"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    env["RESOURCES_FAULT"] = "persist.after_publish"
    killed = subprocess.run([sys.executable, str(DRIVER), str(home), str(ackfile), "rewrite"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    svc = open_service(home, pg_url)       # recovery runs at start
    try:
        assert svc.catalog.intents.pending() == []
        report = doctor.run(svc)
        assert report["ok"], report["problems"]
        (slot,) = [r for r in svc.catalog.resources.all() if r.slot == "archive"]
        data = b"".join(svc.read("ws-crash", slot.uri)[3])
        assert hashlib.sha256(data).hexdigest() == slot.sha256     # old or new, never a mix
        assert svc.search("ws-crash", "baseword1").total == 1
    finally:
        svc.close()


def test_a_commit_to_the_change_log_wakes_listeners(pg_url):
    """LISTEN/NOTIFY: followers on other nodes wake at the commit of a change, not at a
    rolled-back one, and not at a write that appends nothing to the log."""
    import threading

    from storage.catalog import Catalog
    listener, writer = Catalog(pg_url), Catalog(pg_url)
    woken = threading.Event()
    stop = listener.database.listen(woken.set)
    try:
        assert woken.wait(5)                 # the first wake: (re)connected
        woken.clear()
        writer.kv.sweep(0.0)                 # a write without a change: no wake
        try:
            with writer.transaction() as tx:
                writer.changes.append(tx, "R1")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert not woken.wait(1.5)
        with writer.transaction() as tx:
            writer.changes.append(tx, "R2")
        assert woken.wait(5)
    finally:
        stop()
        listener.close()
        writer.close()

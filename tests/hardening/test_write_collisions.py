"""Issue 14, item 1: one write must never brick the data home.

A file where a folder must go (or the reverse) and paths past the OS limits are refused
with a precise 409/400 before any intent exists; recovery never dies on an OS error; a
refused write never comes back as a record after a restart."""
from __future__ import annotations

import json

import pytest

from search_api.service import ResourceService
from server import cli, error_body, ok_body, start_server, stop_server, upload
from storage.config import Settings
from storage.errors import Conflict, InvalidPath


def _restart_clean(server_home, tmp_path) -> None:
    """The next start (serve and an embedded CLI) comes up, and doctor is clean."""
    svc = ResourceService(Settings.from_env(server_home), log=lambda m: None)
    try:
        assert svc.catalog.intents.pending() == []
    finally:
        svc.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("collide"))
    from server import base_env
    cli("slots", "bind", "out", "--root", "reports",
        env=base_env(server.home) | {"RESOURCES_WORKSPACE": "ws-acme"})
    yield server
    stop_server(server)


def test_slot_file_then_file_below_it_is_409_and_home_survives(srv, tmp_path):
    with srv.client("write") as c:
        ok_body(upload(c, b"a", {"slot": "out", "filename": "a"}), 201)
        err = error_body(upload(c, b"b", {"slot": "out", "path": "a", "filename": "b"}),
                         409, "conflict")
        assert "a file already lives" in err["message"]
        # The reverse: a folder where the file must go.
        ok_body(upload(c, b"c", {"slot": "out", "path": "d", "filename": "c"}), 201)
        err = error_body(upload(c, b"d", {"slot": "out", "filename": "d"}), 409, "conflict")
        assert "folder already lives" in err["message"]
        assert c.get("/healthz").status_code == 200
    # Nothing was left for recovery: the next start finds no intent to trip on.
    _restart_clean(srv.home, tmp_path)


def test_breyta_upload_file_then_folder_of_that_name_is_409(srv):
    import urllib.parse
    h = {"X-Breyta-Workspace": "ws-acme", "X-Breyta-Client": "cli"}
    with srv.client("write", headers=h) as c:
        init = c.post("/api/files/uploads/init", json={"filename": "x"}).json()
        uri = urllib.parse.quote_plus(init["uri"])
        assert c.put(f"/api/files/uploads/direct?uri={uri}", content=b"x").status_code == 200
        done = c.post("/api/files/uploads/complete",
                      json={"uri": init["uri"], "upload-session-id": init["upload-session-id"]})
        assert done.status_code == 200, done.text
        r = c.post("/api/files/uploads/init", json={"filename": "y", "folder": "x"})
        assert r.status_code == 409, r.text
        assert "a file already lives" in r.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200


def test_very_long_flow_step_path_filename_is_400_before_any_write(srv):
    long = "f" * 250
    spec = {"flow": "/".join([long] * 4), "step": "/".join([long] * 4),
            "path": "/".join([long] * 4), "filename": "n" * 200}
    with srv.client("write") as c:
        err = error_body(upload(c, b"x", spec), 400)
        assert "longer" in err["message"] or "limit" in err["message"]
    svc = ResourceService(Settings.from_env(srv.home), log=lambda m: None, recover=False)
    try:
        assert svc.catalog.intents.pending() == []
    finally:
        svc.close()


def test_recovery_quarantines_an_intent_it_cannot_finish(tmp_path):
    """An intent left by an older build (or a damaged one) whose path the filesystem
    refuses: the start reports it and goes on; doctor lists it."""
    home = tmp_path / "home"
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        svc.persist("ws-acme", {"filename": "a", "flow": "f", "step": "s"}, b"a")
        bad_key = "workspaces/ws-acme/persist/" + "/".join(["z" * 255] * 20)
        row = {"id": "01JBAD", "path": bad_key, "size": 1}
        svc.catalog.intents.add_now("persist", {"staging": "", "connection": "platform",
                                           "row": row, "text": ""}, 0)
        blob = home / "workspaces/ws-acme/persist/blocker"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_text("i am a file")
        svc.catalog.intents.add_now("persist", {"staging": "", "connection": "platform",
                                           "row": {**row, "path": "workspaces/ws-acme/"
                                                   "persist/blocker/under/it"},
                                           "text": ""}, 0)
        svc.catalog.intents.add_now("delete", {"garbage": True}, 0)
    finally:
        svc.close()
    logs: list[str] = []
    svc = ResourceService(Settings.from_env(home), log=logs.append)   # must not raise
    try:
        assert svc.catalog.intents.pending() == []
        assert len(svc.catalog.intents.quarantined()) >= 1
        assert any("set aside" in line for line in logs)
        # Serving still works: search and persist.
        svc.persist("ws-acme", {"filename": "b"}, b"b")
    finally:
        svc.close()


def test_refused_publish_is_not_rolled_forward_into_a_folder_record(tmp_path):
    """The collision appears between the pre-check and the publish (a concurrent writer):
    the persist is a 409 and no record ever points at the folder."""
    home = tmp_path / "home"
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        svc.bind_slot("ws-acme", "out", "r")
        job = svc.begin_persist("ws-acme", {"slot": "out", "filename": "t"})
        job.write(b"body")
        (home / "workspaces/ws-acme/storage/r/t").mkdir(parents=True)
        with pytest.raises(Conflict):
            job.commit()
        assert svc.catalog.intents.pending() == []
    finally:
        svc.close()
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        assert svc.list("ws-acme").total == 0
    finally:
        svc.close()


def test_collision_error_types_in_process(tmp_path):
    svc = ResourceService(Settings.from_env(tmp_path / "home"), log=lambda m: None)
    try:
        svc.bind_slot("ws-acme", "s", "root")
        svc.persist("ws-acme", {"slot": "s", "filename": "a"}, b"1")
        with pytest.raises(Conflict):
            svc.persist("ws-acme", {"slot": "s", "path": "a", "filename": "b"}, b"2")
        with pytest.raises(InvalidPath):
            svc.persist("ws-acme", {"flow": "/".join(["q" * 250] * 4),
                                    "step": "/".join(["q" * 250] * 4), "filename": "x"}, b"3")
        assert svc.catalog.intents.pending() == []
    finally:
        svc.close()

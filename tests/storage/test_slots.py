"""CONTRACT slots: a slot bound to a root places blobs at
workspaces/<ws>/storage/<root>/<path>/<filename>; writing again replaces the content under
the same uri with version + 1, and the index follows."""
from __future__ import annotations

import time

import pytest

from conftest import files_under
from storage.errors import Conflict, InvalidPath, InvalidSpec, TooLarge

WS = "ws-acme"
SPEC = {"slot": "archive", "path": "exports/{{input.year}}", "filename": "summary.txt",
        "params": {"input": {"year": 2026}}}
TARGET = f"workspaces/{WS}/storage/reports/acme/exports/2026/summary.txt"


@pytest.fixture
def archive(service):
    return service.bind_slot(WS, "archive", "reports/acme")


def read_back(service, uri):
    return b"".join(service.read(WS, uri)[3])


def test_bind_and_list_slots(service, archive):
    assert (archive.name, archive.root, archive.connection) == ("archive", "reports/acme", "platform")
    listed = [service.slot_json(s) for s in service.list_slots(WS)]
    assert len(listed) == 1
    assert listed[0]["slot"] == "archive"
    assert listed[0]["root"] == "reports/acme"
    assert listed[0]["connection"] == "platform"
    assert listed[0]["storage-backend"] == "platform"
    assert service.list_slots("ws-other") == []


def test_rebinding_a_slot_moves_new_writes_and_keeps_created_at(service, home, archive):
    time.sleep(0.002)
    again = service.bind_slot(WS, "archive", "reports/acme-2027")
    assert again.created_at == archive.created_at
    assert again.updated_at > archive.updated_at
    assert [s.root for s in service.list_slots(WS)] == ["reports/acme-2027"]
    res = service.persist(WS, {"slot": "archive", "filename": "x.txt"}, b"x").resource
    assert res.path == f"workspaces/{WS}/storage/reports/acme-2027/x.txt"


def test_unknown_connection_is_rejected(service):
    with pytest.raises(InvalidSpec) as err:
        service.bind_slot(WS, "archive", "reports/acme", connection="nowhere")
    assert "nowhere" in err.value.message
    assert service.list_slots(WS) == []


@pytest.mark.parametrize("name", ["", "a/b", "../x", "-x", "a b"])
def test_bad_slot_name_is_rejected(service, name):
    with pytest.raises(InvalidPath) as err:
        service.bind_slot(WS, name, "reports/acme")
    assert "slot name" in err.value.message
    assert service.list_slots(WS) == []


def test_slot_persist_lands_at_the_exact_contract_path(service, home, archive):
    res = service.persist(WS, SPEC, b"first version\n").resource
    rec = res.to_json(service.settings.public_url)
    assert rec["path"] == TARGET
    assert rec["storage-root"] == "reports/acme"
    assert rec["path-under-root"] == "exports/2026/summary.txt"
    assert rec["slot"] == "archive"
    assert rec["storage-backend"] == "platform"
    assert rec["version"] == 1
    assert (home / TARGET).read_bytes() == b"first version\n"
    assert read_back(service, rec["uri"]) == b"first version\n"


def test_writing_the_same_slot_path_again_replaces_the_content(service, home, archive):
    first = service.persist(WS, SPEC, b"alpha wordcrocus\n")
    assert first.created
    one = first.resource.to_json("")
    time.sleep(0.005)   # so updated-at (millisecond resolution) can move on

    second = service.persist(WS, SPEC, b"beta wordhyacinth and more\n")
    assert not second.created and not second.replayed
    two = second.resource.to_json("")

    assert two["uri"] == one["uri"] and two["id"] == one["id"]
    assert two["version"] == 2
    assert two["created-at"] == one["created-at"]
    assert two["updated-at"] > one["updated-at"]
    assert two["path"] == one["path"] == TARGET
    assert two["size"] == len(b"beta wordhyacinth and more\n")
    assert two["sha256"] != one["sha256"]

    # the blob holds the new bytes; one file, one record
    assert (home / TARGET).read_bytes() == b"beta wordhyacinth and more\n"
    assert read_back(service, two["uri"]) == b"beta wordhyacinth and more\n"
    storage_files = {f for f in files_under(home) if f.startswith(f"workspaces/{WS}/storage/")}
    assert storage_files == {TARGET}
    assert service.catalog.resources.count() == 1
    assert service.get(WS, one["uri"]).version == 2

    # the index follows: the new text is found, the old is gone, one entry
    assert [r.uri for r in service.search(WS, "wordhyacinth").items] == [two["uri"]]
    assert service.search(WS, "wordcrocus").items == []
    assert service.list(WS).total == 1

    # a third write keeps counting
    third = service.persist(WS, SPEC, b"gamma\n").resource
    assert (third.uri, third.version) == (one["uri"], 3)
    assert third.to_json("")["created-at"] == one["created-at"]


def test_a_different_year_is_a_different_resource(service, home, archive):
    a = service.persist(WS, SPEC, b"a").resource
    b = service.persist(WS, {**SPEC, "params": {"input": {"year": 2027}}}, b"b").resource
    assert a.uri != b.uri
    assert b.path == f"workspaces/{WS}/storage/reports/acme/exports/2027/summary.txt"
    assert (home / a.path).read_bytes() == b"a" and (home / b.path).read_bytes() == b"b"


def test_slot_rewrite_with_a_kv_result_does_not_replace_a_file(service, home, archive):
    spec = {"slot": "archive", "filename": "value.json"}
    file_res = service.persist(WS, spec, b'{"a": 1}').resource
    assert file_res.type == "file"
    with pytest.raises(Conflict):
        service.persist(WS, {**spec, "type": "kv"}, b'{"a": 2}')
    assert (home / file_res.path).read_bytes() == b'{"a": 1}'
    assert service.get(WS, file_res.uri).version == 1
    assert service.catalog.resources.count() == 1
    assert not any((home / "tmp").iterdir())


def test_slot_filter_finds_the_slot_resources(service, archive):
    in_slot = service.persist(WS, SPEC, b"in the slot").resource
    service.persist(WS, {"filename": "summary.txt"}, b"not in the slot")
    assert [r.uri for r in service.list(WS, {"slot": "archive"}).items] == [in_slot.uri]
    assert [r.uri for r in service.list(WS, {"storage-root": "reports/acme"}).items] == [in_slot.uri]
    assert [r.uri for r in service.search(WS, 'storage_root:"reports/acme"').items] == [in_slot.uri]


def test_a_failed_rewrite_leaves_the_old_content_intact(service, home, archive):
    first = service.persist(WS, SPEC, b"keep me\n").resource
    before = files_under(home)

    def too_big():
        block = b"z" * (1024 * 1024)
        for _ in range(51):
            yield block

    with pytest.raises(TooLarge):
        service.persist(WS, SPEC, too_big())
    with pytest.raises(InvalidSpec):
        service.persist(WS, {**SPEC, "type": "kv"}, b"{broken")
    with pytest.raises(InvalidPath):
        service.persist(WS, {**SPEC, "path": "exports/{{input.year}}/.."}, b"x")
    assert files_under(home) == before
    assert (home / TARGET).read_bytes() == b"keep me\n"
    current = service.get(WS, first.uri)
    assert current.version == 1 and current.sha256 == first.sha256
    assert not any((home / "tmp").iterdir())


def test_a_file_dropped_in_a_slot_folder_is_adopted_where_it_lies(service, home):
    """watch and doctor register such files in place: never copied over, so a program
    still writing there loses nothing."""
    service.bind_slot("ws-acme", "archive", "reports/acme")
    folder = home / "workspaces/ws-acme/storage/reports/acme/drop"
    folder.mkdir(parents=True)
    dropped = folder / "note.txt"
    dropped.write_bytes(b"adoptedwombat notes")
    inode = dropped.stat().st_ino
    res = service.adopt("ws-acme", {"slot": "archive", "path": "drop",
                                    "filename": "note.txt"}).resource
    assert dropped.stat().st_ino == inode
    assert res.path_under_root == "drop/note.txt" and res.size == 19
    assert [r.uri for r in service.search("ws-acme", "adoptedwombat").items] == [res.uri]
    dropped.write_bytes(b"adoptedwombat notes, second draft")
    again = service.adopt("ws-acme", {"slot": "archive", "path": "drop",
                                      "filename": "note.txt"}).resource
    assert again.uri == res.uri and again.version == 2 and again.size == 33

"""The bulk path (persist_many): same records, layout and validation as persist."""
from __future__ import annotations

import hashlib

import pytest

from conftest import files_under
from storage.errors import InvalidPath


def test_bulk_persist_makes_the_same_records_as_persist(service, home):
    bodies = {f"bulk{i}.txt": f"bulk body {i} quetzalword".encode() for i in range(40)}
    results = service.persist_many("ws-b", (({"filename": n}, b) for n, b in bodies.items()))
    assert len({r.resource.uri for r in results}) == 40
    for r in results:
        res = r.resource
        data = (home / res.path).read_bytes()
        assert data == bodies[res.filename]
        assert res.sha256 == hashlib.sha256(data).hexdigest() and res.size == len(data)
        assert r.created and res.version == 1
    page = service.search("ws-b", "quetzalword", limit=100)
    assert page.total == 40
    assert not list((home / "tmp").iterdir())


def test_bulk_rewrites_of_one_slot_path_are_versions_of_one_resource(service):
    service.bind_slot("ws-b", "archive", "reports/acme")
    spec = {"slot": "archive", "path": "exports/2026", "filename": "a.txt"}
    results = service.persist_many("ws-b", [(spec, b"one"), (spec, b"two"), (spec, b"three")])
    assert len({r.resource.uri for r in results}) == 1
    assert [r.resource.version for r in results] == [1, 2, 3]
    uri = results[0].resource.uri
    assert b"".join(service.read("ws-b", uri)[3]) == b"three"
    assert service.index.count() == 1


def test_a_bad_item_rejects_the_rest_of_the_bulk_and_leaves_nothing_half_written(service, home):
    before = files_under(home)
    with pytest.raises(InvalidPath):
        service.persist_many("ws-b", [({"filename": "ok.txt"}, b"fine"),
                                      ({"filename": "../escape.txt"}, b"bad")])
    assert service.catalog.resources.count() == 0
    assert not list((home / "tmp").iterdir())
    assert files_under(home) - before <= {p for p in files_under(home) if p.startswith("index")}

"""CONTRACT Idempotency-Key: a retry with the same key returns the first record and
writes nothing; the same key with a different body is a conflict (409)."""
from __future__ import annotations

import pytest

from conftest import files_under
from storage.errors import IdempotencyConflict

WS = "ws-acme"
SPEC = {"path": "exports", "filename": "report.txt", "flow": "billing", "step": "export"}
BODY = b"the quarterly numbers\n"


def state(service, home):
    return files_under(home), service.catalog.resources.count(), service.list(WS).total


def test_same_key_same_body_same_spec_replays_the_first_record(service, home):
    first = service.persist(WS, SPEC, BODY, idempotency_key="run-1/step-export")
    assert first.created and not first.replayed
    before = state(service, home)

    again = service.persist(WS, dict(SPEC), iter([BODY[:5], BODY[5:]]),
                            idempotency_key="run-1/step-export")
    assert again.replayed and not again.created
    assert again.resource.uri == first.resource.uri
    assert again.resource.to_json("") == first.resource.to_json("")
    assert state(service, home) == before        # no new file, record or index entry
    assert not any((home / "tmp").iterdir())
    assert b"".join(service.read(WS, first.resource.uri)[3]) == BODY


def test_same_key_different_body_is_a_conflict_and_keeps_nothing(service, home):
    first = service.persist(WS, SPEC, BODY, idempotency_key="k-1")
    before = state(service, home)
    with pytest.raises(IdempotencyConflict) as err:
        service.persist(WS, SPEC, b"other numbers\n", idempotency_key="k-1")
    assert err.value.status == 409 and err.value.code == "idempotency_conflict"
    assert "k-1" in err.value.message
    assert state(service, home) == before
    assert not any((home / "tmp").iterdir())
    assert b"".join(service.read(WS, first.resource.uri)[3]) == BODY


def test_same_key_different_spec_is_a_conflict(service, home):
    service.persist(WS, SPEC, BODY, idempotency_key="k-2")
    before = state(service, home)
    with pytest.raises(IdempotencyConflict):
        service.persist(WS, {**SPEC, "filename": "other.txt"}, BODY, idempotency_key="k-2")
    assert state(service, home) == before


def test_without_a_key_every_persist_is_new(service):
    a = service.persist(WS, SPEC, BODY).resource
    b = service.persist(WS, SPEC, BODY).resource
    assert a.uri != b.uri
    assert service.catalog.resources.count() == 2


def test_different_keys_are_different_resources(service):
    a = service.persist(WS, SPEC, BODY, idempotency_key="a").resource
    b = service.persist(WS, SPEC, BODY, idempotency_key="b").resource
    assert a.uri != b.uri


def test_keys_belong_to_one_workspace(service):
    a = service.persist(WS, SPEC, BODY, idempotency_key="shared").resource
    b = service.persist("ws-other", SPEC, BODY, idempotency_key="shared")
    assert b.created and not b.replayed
    assert b.resource.workspace == "ws-other" and b.resource.uri != a.uri


def test_replay_of_a_slot_persist_returns_the_record(service, home):
    service.bind_slot(WS, "archive", "reports/acme")
    spec = {"slot": "archive", "path": "exports/2026", "filename": "a.txt"}
    first = service.persist(WS, spec, BODY, idempotency_key="slot-key").resource
    again = service.persist(WS, spec, BODY, idempotency_key="slot-key")
    assert again.replayed
    assert again.resource.uri == first.uri and again.resource.version == 1
    assert service.get(WS, first.uri).version == 1


def test_replay_of_a_kv_persist(service):
    first = service.persist(WS, {"type": "kv"}, b'{"x": 1}', idempotency_key="kv-1").resource
    again = service.persist(WS, {"type": "kv"}, b'{"x": 1}', idempotency_key="kv-1")
    assert again.replayed and again.resource.uri == first.uri
    with pytest.raises(IdempotencyConflict):
        service.persist(WS, {"type": "kv"}, b'{"x": 2}', idempotency_key="kv-1")


def test_after_the_resource_is_deleted_the_retry_writes_anew(service, home):
    first = service.persist(WS, SPEC, BODY, idempotency_key="gone").resource
    service.delete(WS, first.uri)
    again = service.persist(WS, SPEC, BODY, idempotency_key="gone")
    assert again.created and not again.replayed
    assert again.resource.uri != first.uri
    assert b"".join(service.read(WS, again.resource.uri)[3]) == BODY
    # and the key now points at the new record
    third = service.persist(WS, SPEC, BODY, idempotency_key="gone")
    assert third.replayed and third.resource.uri == again.resource.uri

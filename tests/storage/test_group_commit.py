"""Group commit (storage/group.py) and the persists that go through it."""
from __future__ import annotations

import threading

import pytest

from storage.group import GroupCommit, Pending


def test_waiting_callers_share_the_next_pass_and_get_their_own_outcome():
    first_pass = threading.Event()
    release = threading.Event()
    batches: list[list[int]] = []

    def run(batch: list[Pending[int]]) -> None:
        batches.append([p.item for p in batch])
        if len(batches) == 1:
            first_pass.set()
            release.wait(30)             # callers arriving now queue for one pass
        for p in batch:
            if p.item == 3:
                p.error = ValueError("three fails alone")
            else:
                p.result = p.item * 10

    group: GroupCommit[int] = GroupCommit(run)
    out: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            out[i] = group.submit(i)
        except ValueError as exc:
            out[i] = exc

    lead = threading.Thread(target=call, args=(0,))
    lead.start()
    assert first_pass.wait(30)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for t in others:
        t.start()
    while sum(len(b) for b in batches) + len(group._queue) < 6:
        threading.Event().wait(0.01)     # all five are queued behind the first pass
    release.set()
    for t in [lead, *others]:
        t.join()
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert {i: v for i, v in out.items() if i != 3} == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
    assert isinstance(out[3], ValueError)


def test_one_idempotency_key_from_many_threads_writes_once(service):
    results = []
    errors: list[BaseException] = []

    def persist() -> None:
        try:
            results.append(service.persist("ws-group", {"filename": "once.txt"},
                                           b"same body", idempotency_key="k-1"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            service.catalog.close()

    threads = [threading.Thread(target=persist) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.resource.uri for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert service.catalog.resources.count("ws-group") == 1


def test_a_conflict_fails_only_its_own_persist(service):
    service.bind_slot("ws-group", "s", "root")
    spec = {"slot": "s", "filename": "x.json"}
    service.persist("ws-group", {**spec, "type": "kv"}, b'{"a": 1}')
    from storage.errors import Conflict
    with pytest.raises(Conflict):
        service.persist("ws-group", spec, b"a blob")
    ok = service.persist("ws-group", {"filename": "fine.txt"}, b"fine").resource
    assert service.get("ws-group", ok.uri).size == 4


def test_each_caller_waits_for_its_own_change_even_when_another_thread_led(service):
    service.wait_default = False
    problems: list[str] = []

    def persist(t: int) -> None:
        try:
            for i in range(5):
                word = f"ownword{t}x{i}"
                res = service.persist("ws-group", {"filename": f"{t}-{i}.txt"},
                                      word.encode()).resource
                pos = service.catalog.changes.last_position()
                if service.catalog.changes.after(pos - 1)[:1] != [(pos, res.id)]:
                    problems.append(f"{word}: position {pos} is not its change")
                res = service.persist("ws-group", {"filename": f"{t}-{i}-w.txt"},
                                      f"{word}w".encode(), wait=True).resource
                if [r.uri for r in service.search("ws-group", f"{word}w").items] != [res.uri]:
                    problems.append(f"{word}w not searchable after wait=True")
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(repr(exc))
        finally:
            service.catalog.close()

    threads = [threading.Thread(target=persist, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems

"""Several indexes follow one catalog's change log by position (indexer/index.py)."""
from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

from indexer.index import SearchIndex
from search_api.service import ResourceService

WS = "ws-follow"


def docs(index: SearchIndex) -> dict[str, int]:
    index.refresh()
    return dict(index.doc_ids())


def catalog_docs(service: ResourceService) -> dict[str, int]:
    return {r.id: r.seq for r in service.catalog.resources.all()}


def write_some(service: ResourceService, word: str, n: int = 5) -> list[str]:
    uris = [service.persist(WS, {"filename": f"{word}{i}.txt"}, f"{word} {i}".encode())
            .resource.uri for i in range(n)]
    service.update_overrides(WS, uris[0], {"tags": [f"{word}-tag"]})
    service.delete(WS, uris[1])
    return uris


def test_two_followers_converge_on_the_same_documents(service: ResourceService, home: Path):
    second = SearchIndex(home / "index-b", service.catalog, log=lambda m: None)
    write_some(service, "alpha")
    assert second.applied < service.index.applied     # it has not followed yet
    second.sync()
    write_some(service, "beta")
    second.sync()
    assert docs(second) == docs(service.index) == catalog_docs(service)
    assert second.applied == service.index.applied == service.catalog.changes.head()
    followers = service.catalog.changes.followers()
    assert {service.index._target, second._target} <= set(followers)


def test_a_deleted_follower_rebuilt_resumes_without_missing_a_change(service, home):
    second = SearchIndex(home / "index-b", service.catalog, log=lambda m: None)
    write_some(service, "gamma")
    second.sync()
    target = home / second._target
    (home / "index-b").unlink()
    shutil.rmtree(target)
    service.catalog.changes.drop_follower(target.name)
    write_some(service, "delta")            # written while no second index exists
    rebuilt = SearchIndex(home / "index-b", service.catalog, log=lambda m: None)
    write_some(service, "epsilon")          # written after the rebuild's position
    rebuilt.sync()
    assert docs(rebuilt) == catalog_docs(service)


def test_pruning_never_drops_a_change_a_live_follower_needs(service, home):
    slow = SearchIndex(home / "index-slow", service.catalog, log=lambda m: None)
    behind = slow.applied
    write_some(service, "zeta")
    service.index.prune()                   # the fast index applied all of it
    assert [p for p, _ in service.catalog.changes.after(behind)][0] == behind + 1
    slow.sync()
    service.index.prune()
    assert service.catalog.changes.after(0) == []    # now every follower has it
    assert docs(slow) == catalog_docs(service)


def test_a_follower_behind_the_pruned_end_rebuilds(service, home):
    lost = SearchIndex(home / "index-lost", service.catalog, log=lambda m: None)
    name = lost._target
    write_some(service, "eta")
    # It stopped reporting (an index last seen long ago): pruning leaves it behind.
    service.catalog.changes.drop_follower(name)
    service.index.prune()
    assert service.catalog.changes.pruned_through() > lost.applied
    reopened = SearchIndex(home / "index-lost", service.catalog, log=lambda m: None)
    assert reopened._target != name          # a new directory, built from the catalog
    assert docs(reopened) == catalog_docs(service)


def test_concurrent_writers_to_one_slot_path_get_increasing_versions(service):
    service.bind_slot(WS, "out", "reports/out")
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        try:
            for i in range(6):
                body = f"slot body {t}-{i} ".encode() * 50
                res = service.persist(WS, {"slot": "out", "path": "x", "filename": "same.txt"},
                                      body).resource
                with lock:
                    results.append((res.version, hashlib.sha256(body).hexdigest()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            service.catalog.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    versions = sorted(v for v, _ in results)
    assert versions == list(range(1, 37))    # every write a distinct, increasing version
    final = service.list(WS, {"slot": "out"}).items
    assert len(final) == 1 and final[0].version == 36
    data = b"".join(service.read(WS, final[0].uri)[3])
    assert hashlib.sha256(data).hexdigest() == final[0].sha256 == dict(
        (v, s) for v, s in results)[36]

"""Issue 4: filters, exact fields, paging, concurrent writers of one process."""
from __future__ import annotations

import threading

import pytest

WS = "ws-acme"


def uris(page):
    return {r.uri for r in page.items}


def all_uris(service, q=None, params=None):
    page = service.search(WS, q, params or {}, limit=100)
    assert page.total == len(page.items)
    return uris(page)


@pytest.fixture
def corpus(service, fixtures_dir):
    service.bind_slot(WS, "archive", "reports/acme")
    service.bind_slot(WS, "media", "reports/acme-media")
    pdf = (fixtures_dir / "report-multipage.pdf").read_bytes()
    png = (fixtures_dir / "image.png").read_bytes()
    made = {}

    def put(name, spec, body):
        made[name] = service.persist(WS, spec, body).resource.uri

    put("a", {"slot": "archive", "path": "exports/2026", "filename": "a.pdf"}, pdf)
    put("b", {"slot": "archive", "path": "exports/20261", "filename": "b.txt"},
        b"corpusword in a neighbouring folder\n")
    put("c", {"slot": "archive", "path": "exports/2026/q1", "filename": "c.png"}, png)
    put("d", {"slot": "media", "filename": "d.txt"}, b"corpusword in the media root\n")
    put("e", {"type": "kv", "filename": "result.json"}, b'{"note": "corpusword result"}')
    put("f", {"tier": "ephemeral", "filename": "f.txt"}, b"corpusword ephemeral\n")
    # Another workspace never shows up.
    service.persist("ws-other", {"filename": "x.txt"}, b"corpusword elsewhere\n")
    return made


def names(corpus, found):
    inverse = {v: k for k, v in corpus.items()}
    return {inverse.get(u, u) for u in found}


def test_storage_root_query_equals_storage_root_filter(service, corpus):
    by_query = all_uris(service, 'storage_root:"reports/acme"')
    by_filter = all_uris(service, None, {"storage-root": "reports/acme"})
    assert by_query == by_filter
    assert names(corpus, by_filter) == {"a", "b", "c"}
    assert all_uris(service, 'storage-root:"reports/acme"') == by_filter   # kebab alias
    assert names(corpus, all_uris(service, None, {"storage-root": "reports/acme-media"})) == {"d"}
    assert names(corpus, all_uris(service, None, {"storage-root": "/reports/acme/"})) == {"a", "b", "c"}


def test_path_prefix_is_folder_aware(service, corpus):
    base = {"storage-root": "reports/acme"}
    assert names(corpus, all_uris(service, None, {**base, "path-prefix": "exports/2026"})) == {"a", "c"}
    assert names(corpus, all_uris(service, None, {**base, "path-prefix": "exports/20261"})) == {"b"}
    assert names(corpus, all_uris(service, None, {**base, "path-prefix": "exports"})) == {"a", "b", "c"}
    assert names(corpus, all_uris(service, None, {**base, "path-prefix": "exports/202"})) == set()
    assert names(corpus, all_uris(service, None, {"path-prefix": "exports/2026/q1"})) == {"c"}
    # The path itself as a prefix (an exact file) matches that file.
    assert names(corpus, all_uris(service, None, {"path-prefix": "exports/2026/a.pdf"})) == {"a"}


def test_slot_accept_type_and_tier_filters(service, corpus):
    assert names(corpus, all_uris(service, None, {"slot": "archive"})) == {"a", "b", "c"}
    assert names(corpus, all_uris(service, None, {"slot": "media"})) == {"d"}
    assert names(corpus, all_uris(service, None, {"accept": "image/*"})) == {"c"}
    assert names(corpus, all_uris(service, None, {"accept": "application/pdf,image/*"})) == {"a", "c"}
    assert names(corpus, all_uris(service, None, {"type": "result"})) == {"e"}
    assert names(corpus, all_uris(service, None, {"types": "file"})) == {"a", "b", "c", "d", "f"}
    assert names(corpus, all_uris(service, None, {"tier": "ephemeral"})) == {"f"}
    assert names(corpus, all_uris(service, None, {"exclude-tier": "ephemeral"})) == {"a", "b", "c", "d", "e"}
    assert names(corpus, all_uris(service, None, {"exclude-tier": "retained"})) == {"f"}
    # Filters combine with a text query (AND).
    assert names(corpus, all_uris(service, "corpusword")) == {"b", "d", "e"}   # f: ephemeral, no content
    assert names(corpus, all_uris(service, "corpusword", {"slot": "archive"})) == {"b"}
    assert names(corpus, all_uris(service, "corpusword", {"type": "result"})) == {"e"}
    assert names(corpus, all_uris(service, "corpusword", {"exclude-tier": "retained"})) == set()
    assert names(corpus, all_uris(service, "zephyrquasar", {"slot": "archive",
                                                           "path-prefix": "exports/2026"})) == {"a"}


def _persist_many(service, n):
    made = []
    with service.batch():
        for i in range(n):
            made.append(service.persist(WS, {"filename": f"page-{i:03d}.txt"},
                                        f"pagingword number {i}\n".encode()).resource.uri)
    return made


def test_cursor_paging_through_250_ranked_matches(service):
    made = _persist_many(service, 250)
    seen, cursor, pages = [], None, 0
    while True:
        page = service.search(WS, "pagingword", limit=37, cursor=cursor)
        assert page.total == 250
        seen.extend(r.uri for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20
    assert len(seen) == 250 and set(seen) == set(made)


def test_cursor_paging_through_250_newest_first(service):
    made = _persist_many(service, 250)
    seen, cursor, pages = [], None, 0
    while True:
        page = service.list(WS, {}, limit=50, cursor=cursor)
        assert page.total == 250
        seen.extend(r.uri for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20
    assert len(seen) == 250 and len(set(seen)) == 250
    assert seen == list(reversed(made))          # newest first


def test_concurrent_persists_from_8_threads_are_all_indexed(service):
    errors, made, lock = [], [], threading.Lock()

    def worker(t):
        try:
            for i in range(10):
                uri = service.persist(WS, {"filename": f"t{t}-{i}.txt"},
                                      f"threadword t{t}x{i}\n".encode()).resource.uri
                with lock:
                    made.append(uri)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            service.catalog.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    page = service.search(WS, "threadword", limit=100)
    assert page.total == 80
    assert uris(page) == set(made)
    assert service.index.count() == 80
    assert service.catalog.changes.backlog() == 0

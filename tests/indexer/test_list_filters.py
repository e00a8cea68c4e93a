"""CONTRACT filters for list: folder-aware path-prefix, accept patterns, newest first,
cursor paging that returns every item once, meta.total counting all matches."""
from __future__ import annotations

import pytest

from storage.errors import InvalidCursor, InvalidPath, InvalidSpec

WS = "ws-acme"


@pytest.fixture
def archive(service):
    service.bind_slot(WS, "archive", "reports/acme")
    return "archive"


def uris(page) -> list[str]:
    return [r.uri for r in page.items]


def put(service, spec, body=b"data"):
    return service.persist(WS, spec, body).resource


def test_path_prefix_is_folder_aware(service, archive):
    hit = put(service, {"slot": archive, "path": "exports/2026", "filename": "a.pdf"})
    deeper = put(service, {"slot": archive, "path": "exports/2026/q1", "filename": "b.pdf"})
    near = put(service, {"slot": archive, "path": "exports/20261", "filename": "a.pdf"})
    assert hit.path_under_root == "exports/2026/a.pdf"
    assert near.path_under_root == "exports/20261/a.pdf"

    found = service.list(WS, {"path-prefix": "exports/2026"})
    assert set(uris(found)) == {hit.uri, deeper.uri}
    assert near.uri not in uris(found)
    assert found.total == 2

    assert uris(service.list(WS, {"path-prefix": "exports/20261"})) == [near.uri]
    assert set(uris(service.list(WS, {"path-prefix": "exports"}))) == {hit.uri, deeper.uri, near.uri}
    assert uris(service.list(WS, {"path-prefix": "exports/202"})) == []
    # a trailing or leading slash means the same folder
    assert set(uris(service.list(WS, {"path-prefix": "exports/2026/"}))) == {hit.uri, deeper.uri}
    # combined with the slot and the root (AND)
    assert set(uris(service.list(WS, {"path-prefix": "exports/2026", "slot": archive}))) == \
        {hit.uri, deeper.uri}
    assert uris(service.list(WS, {"path-prefix": "exports/2026",
                                  "storage-root": "elsewhere"})) == []


def test_path_prefix_rejects_bad_paths(service):
    with pytest.raises(InvalidPath) as err:
        service.list(WS, {"path-prefix": "exports/../secret"})
    assert "path-prefix" in err.value.message and "'..'" in err.value.message


def test_accept_returns_only_matching_types(service, fixtures_dir):
    made = {}
    for name in ("image.png", "notes.md", "report-multipage.pdf", "document.json"):
        with open(fixtures_dir / name, "rb") as fh:
            made[name] = service.persist(WS, {"filename": name}, fh).resource
    images = service.list(WS, {"accept": "image/*"})
    assert uris(images) == [made["image.png"].uri]
    assert all(r.content_type.startswith("image/") for r in images.items)
    assert images.total == 1

    assert uris(service.list(WS, {"accept": "application/pdf"})) == [made["report-multipage.pdf"].uri]
    both = service.list(WS, {"accept": "image/*,application/pdf"})
    assert set(uris(both)) == {made["image.png"].uri, made["report-multipage.pdf"].uri}
    assert service.list(WS, {"accept": "*/*"}).total == 4
    assert service.list(WS, {"accept": "video/*"}).items == []


def test_accept_rejects_garbage(service):
    with pytest.raises(InvalidSpec) as err:
        service.list(WS, {"accept": "not a mime"})
    assert "accept" in err.value.message


def test_list_is_newest_first(service):
    made = [put(service, {"filename": f"n{i}.txt"}, f"{i}".encode()) for i in range(5)]
    assert uris(service.list(WS)) == [r.uri for r in reversed(made)]


def test_a_slot_rewrite_moves_the_resource_to_the_front(service, archive):
    spec = {"slot": archive, "filename": "live.txt"}
    live = put(service, spec, b"v1")
    other = put(service, {"filename": "other.txt"})
    assert uris(service.list(WS)) == [other.uri, live.uri]
    put(service, spec, b"v2")
    assert uris(service.list(WS)) == [live.uri, other.uri]


def test_cursor_paging_returns_every_item_once(service):
    made = [put(service, {"filename": f"p{i}.txt", "tags": ["paged"]}, str(i).encode())
            for i in range(11)]
    put(service, {"filename": "unrelated.txt"})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = service.list(WS, {"tag": "paged"}, limit=4, cursor=cursor)
        assert page.total == 11
        assert len(page.items) <= 4
        seen.extend(uris(page))
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert seen == [r.uri for r in reversed(made)]
    assert len(set(seen)) == 11


def test_paging_is_stable_when_new_items_arrive(service):
    made = [put(service, {"filename": f"s{i}.txt"}) for i in range(6)]
    first = service.list(WS, limit=3)
    newcomer = put(service, {"filename": "late.txt"})
    second = service.list(WS, limit=3, cursor=first.next_cursor)
    got = uris(first) + uris(second)
    assert got == [r.uri for r in reversed(made)]
    assert newcomer.uri not in got


def test_exact_page_boundary_ends_cleanly(service):
    for i in range(4):
        put(service, {"filename": f"e{i}.txt"})
    page = service.list(WS, limit=2)
    page = service.list(WS, limit=2, cursor=page.next_cursor)
    assert len(page.items) == 2
    if page.next_cursor is not None:
        tail = service.list(WS, limit=2, cursor=page.next_cursor)
        assert tail.items == [] and tail.next_cursor is None


def test_a_cursor_belongs_to_its_filters(service):
    for i in range(3):
        put(service, {"filename": f"c{i}.txt", "tags": ["t"]})
    page = service.list(WS, {"tag": "t"}, limit=1)
    with pytest.raises(InvalidCursor):
        service.list(WS, {"tag": "other"}, limit=1, cursor=page.next_cursor)
    with pytest.raises(InvalidCursor):
        service.list(WS, limit=1, cursor="not-a-cursor")


@pytest.mark.parametrize("limit", [0, 101, "many"])
def test_limit_is_bounded(service, limit):
    with pytest.raises(InvalidSpec) as err:
        service.list(WS, limit=limit)
    assert "limit" in err.value.message


def test_default_limit_is_20(service):
    with service.batch():
        for i in range(23):
            put(service, {"filename": f"d{i}.txt"})
    page = service.list(WS)
    assert len(page.items) == 20 and page.total == 23 and page.next_cursor


def test_other_filters_combine_with_and(service):
    a = put(service, {"filename": "a.txt", "tier": "ephemeral", "workflow-id": "run-9",
                      "flow": "f1", "step": "s1"})
    b = put(service, {"filename": "b.txt", "workflow-id": "run-9", "flow": "f1", "step": "s2"})
    c = put(service, {"type": "kv"}, b'{"k": true}')
    assert uris(service.list(WS, {"tier": "ephemeral"})) == [a.uri]
    assert set(uris(service.list(WS, {"exclude-tier": "ephemeral"}))) == {b.uri, c.uri}
    assert uris(service.list(WS, {"type": "result"})) == [c.uri]
    assert uris(service.list(WS, {"types": "file"})) == [b.uri, a.uri]
    assert set(uris(service.list(WS, {"type": "file,result"}))) == {a.uri, b.uri, c.uri}
    assert uris(service.list(WS, {"workflow-id": "run-9", "step": "s2"})) == [b.uri]
    assert uris(service.list(WS, {"workflow-id": "run-9", "tier": "retained"})) == [b.uri]
    assert uris(service.list(WS, {"storage-backend": "platform", "flow": "f1"})) == [b.uri, a.uri]
    assert uris(service.workflow_resources(WS, "run-9", "s1")) == [a.uri]


def test_list_never_shows_another_workspace(service):
    mine = put(service, {"filename": "mine.txt"})
    service.persist("ws-other", {"filename": "theirs.txt"}, b"x")
    assert uris(service.list(WS)) == [mine.uri]

"""Issue 4: search-index overrides replace the content text, add tags, and clear."""
from __future__ import annotations

WS = "ws-acme"


def uris(page):
    return [r.uri for r in page.items]


def make(service):
    return service.persist(WS, {"filename": "memo.txt", "tags": ["memo"]},
                           b"the originalpelican flies over the harbour\n").resource


def test_override_text_replaces_content(service):
    res = make(service)
    assert uris(service.search(WS, "originalpelican")) == [res.uri]
    updated = service.update_overrides(WS, res.uri, {"text": "overridecormorant summary"})
    assert updated.search_index.text == "overridecormorant summary"
    assert updated.content_indexed is False
    assert service.search(WS, "originalpelican").total == 0
    page = service.search(WS, "overridecormorant")
    assert uris(page) == [res.uri]
    assert "overridecormorant" in page.snippets[res.id]
    # The stored bytes never change.
    assert b"".join(service.read(WS, res.uri)[3]) == b"the originalpelican flies over the harbour\n"
    assert service.get(WS, res.uri).sha256 == res.sha256


def test_override_tags_are_added_and_filterable(service):
    res = make(service)
    other = service.persist(WS, {"filename": "other.txt"}, b"unrelated words\n").resource
    service.update_overrides(WS, res.uri, {"tags": ["reviewed", "q3-board"]})
    for tag in ("reviewed", "q3-board", "memo"):
        assert uris(service.search(WS, None, {"tag": tag})) == [res.uri], tag
        assert uris(service.list(WS, {"tag": tag})) == [res.uri], tag
    assert uris(service.search(WS, "tags:reviewed")) == [res.uri]
    assert uris(service.search(WS, "reviewed")) == [res.uri]
    assert uris(service.search(WS, "originalpelican", {"tag": "reviewed"})) == [res.uri]
    assert service.search(WS, "unrelated", {"tag": "reviewed"}).total == 0
    assert uris(service.search(WS, "unrelated")) == [other.uri]
    # A second update adds to, not replaces, the tags.
    service.update_overrides(WS, res.uri, {"tags": ["second"]})
    for tag in ("reviewed", "second"):
        assert uris(service.search(WS, None, {"tag": tag})) == [res.uri], tag


def test_override_source_label(service):
    res = make(service)
    service.update_overrides(WS, res.uri, {"source-label": "ledgerimport"})
    assert service.get(WS, res.uri).source_label == "ledgerimport"
    assert uris(service.search(WS, "ledgerimport")) == [res.uri]


def test_clear_restores_the_default_entry(service):
    res = make(service)
    service.update_overrides(WS, res.uri, {"text": "overridecormorant", "tags": ["reviewed"],
                                           "source-label": "ledgerimport"})
    cleared = service.clear_overrides(WS, res.uri)
    assert cleared.search_index.is_empty()
    assert cleared.content_indexed is True
    assert cleared.source_label == "upload"
    assert uris(service.search(WS, "originalpelican")) == [res.uri]
    assert service.search(WS, "overridecormorant").total == 0
    assert service.search(WS, "ledgerimport").total == 0
    assert service.search(WS, None, {"tag": "reviewed"}).total == 0
    assert uris(service.search(WS, None, {"tag": "memo"})) == [res.uri]
    assert service.index.count() == 1


def test_include_raw_content_false_hides_content(service):
    res = make(service)
    service.update_overrides(WS, res.uri, {"include-raw-content": False})
    assert service.search(WS, "originalpelican").total == 0
    assert uris(service.search(WS, "memo.txt")) == [res.uri]
    service.update_overrides(WS, res.uri, {"include-raw-content": True})
    assert uris(service.search(WS, "originalpelican")) == [res.uri]


def test_overrides_given_at_persist_time(service):
    res = service.persist(WS, {"filename": "spec.txt", "search-index": {
        "text": "persistoverridelynx", "tags": ["from-spec"]}},
        b"the hiddenwolverine text\n").resource
    assert service.search(WS, "hiddenwolverine").total == 0
    assert uris(service.search(WS, "persistoverridelynx")) == [res.uri]
    assert uris(service.search(WS, None, {"tag": "from-spec"})) == [res.uri]
    service.clear_overrides(WS, res.uri)
    assert uris(service.search(WS, "hiddenwolverine")) == [res.uri]

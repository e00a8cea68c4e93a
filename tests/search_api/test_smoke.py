def test_persist_and_search_pdf(service, fixtures_dir):
    with open(fixtures_dir / "report-multipage.pdf", "rb") as fh:
        res = service.persist("ws-acme", {"filename": "report-multipage.pdf"}, fh).resource
    page = service.search("ws-acme", "zephyrquasar")
    assert [r.uri for r in page.items] == [res.uri]
    assert "<b>zephyrquasar</b>" in page.snippets[res.id]

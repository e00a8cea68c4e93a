"""Issue 4: what content goes into the index (text, PDF, binary, bounds, failures)."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from search_api.service import ResourceService
from storage.config import Settings

WS = "ws-acme"


def _load_make_slow_pdf():
    path = Path(__file__).resolve().parents[2] / "fixtures" / "slow_pdf.py"
    spec = importlib.util.spec_from_file_location("fixtures_slow_pdf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_slow_pdf


make_slow_pdf = _load_make_slow_pdf()


def persist_fixture(service, fixtures_dir, name, **spec):
    with open(fixtures_dir / name, "rb") as fh:
        return service.persist(WS, {"filename": name, **spec}, fh).resource


def uris(page):
    return [r.uri for r in page.items]


def test_pdf_word_on_page_two_is_found_with_snippet(service, fixtures_dir):
    res = persist_fixture(service, fixtures_dir, "report-multipage.pdf")
    assert res.content_indexed and res.extraction.extractor == "pdf"
    page = service.search(WS, "zephyrquasar")
    assert uris(page) == [res.uri]
    assert "zephyrquasar" in page.snippets[res.id]
    assert uris(service.search(WS, "Appendix")) == [res.uri]


def test_text_is_cut_at_100k_characters(service, fixtures_dir):
    res = persist_fixture(service, fixtures_dir, "long.txt")
    assert res.content_truncated is True
    assert res.to_json()["content-truncated"] is True
    assert res.content_indexed is True
    assert uris(service.search(WS, "earlyfalcon")) == [res.uri]
    assert service.search(WS, "latewalrus").total == 0


def test_binary_bytes_are_not_indexed_but_names_and_paths_are(service, fixtures_dir):
    png = persist_fixture(service, fixtures_dir, "image.png", path="holidaypics/summer")
    zipped = persist_fixture(service, fixtures_dir, "archive.zip", path="backupjobs")
    for res in (png, zipped):
        assert res.content_indexed is False
    assert service.search(WS, "pngsecretword").total == 0
    assert service.search(WS, "zipsecretword").total == 0
    assert uris(service.search(WS, "image.png")) == [png.uri]
    assert uris(service.search(WS, "archive.zip")) == [zipped.uri]
    assert uris(service.search(WS, "holidaypics")) == [png.uri]
    assert uris(service.search(WS, "holidaypics/summer")) == [png.uri]
    assert uris(service.search(WS, "backupjobs")) == [zipped.uri]


def test_text_like_fixtures_are_content_indexed(service, fixtures_dir):
    markers = {"data.csv": "csvlatitude", "document.json": "jsonpineapple",
               "notes.md": "markdownheron", "config.yaml": "yamlkestrel",
               "script.py": "pythonmarmot", "unicode.txt": "unicodeotter"}
    made = {name: persist_fixture(service, fixtures_dir, name) for name in markers}
    for name, word in markers.items():
        assert uris(service.search(WS, word)) == [made[name].uri], name


def test_ephemeral_text_is_metadata_only_by_default(service):
    body = b"the ephemeralotter swims in the stream\n"
    res = service.persist(WS, {"tier": "ephemeral", "path": "streamlogs",
                               "filename": "capture-7.txt"}, body).resource
    assert res.content_indexed is False
    assert uris(service.search(WS, "capture-7.txt")) == [res.uri]
    assert uris(service.search(WS, "streamlogs")) == [res.uri]
    assert service.search(WS, "ephemeralotter").total == 0


def test_ephemeral_text_with_include_raw_content_is_content_indexed(service):
    body = b"the rawcontentbadger digs\n"
    res = service.persist(WS, {"tier": "ephemeral", "filename": "dig.txt",
                               "search-index": {"include-raw-content": True}}, body).resource
    assert res.content_indexed is True
    assert uris(service.search(WS, "rawcontentbadger")) == [res.uri]


def test_encrypted_and_broken_pdfs_are_indexed_by_metadata(service, fixtures_dir):
    for name in ("encrypted.pdf", "broken.pdf"):
        res = persist_fixture(service, fixtures_dir, name)
        assert res.extraction.error, name
        assert res.content_indexed is False, name
        assert res.to_json()["extraction"]["error"], name
        assert uris(service.search(WS, name)) == [res.uri], name
    assert service.search(WS, "encryptedsecretword").total == 0


def test_slow_pdf_is_abandoned_at_the_time_bound(home, tmp_path):
    slow = make_slow_pdf(tmp_path / "slow.pdf")
    settings = Settings.from_env(home)
    settings.pdf_timeout_seconds = 2
    service = ResourceService(settings, log=lambda msg: None)
    try:
        started = time.monotonic()
        with open(slow, "rb") as fh:
            res = service.persist(WS, {"filename": "slow.pdf"}, fh).resource
        elapsed = time.monotonic() - started
        assert elapsed < 15, elapsed     # the PDF alone takes ~25 s
        assert "timeout" in (res.extraction.error or "")
        assert res.content_indexed is False
        assert uris(service.search(WS, "slow.pdf")) == [res.uri]
    finally:
        service.close()


def test_worker_restarts_after_a_timeout(home, tmp_path, fixtures_dir):
    slow = make_slow_pdf(tmp_path / "slow.pdf")
    settings = Settings.from_env(home)
    settings.pdf_timeout_seconds = 1
    service = ResourceService(settings, log=lambda msg: None)
    try:
        with open(slow, "rb") as fh:
            service.persist(WS, {"filename": "slow.pdf"}, fh)
        res = persist_fixture(service, fixtures_dir, "report-multipage.pdf")
        assert res.extraction.error is None
        assert uris(service.search(WS, "zephyrquasar")) == [res.uri]
    finally:
        service.close()

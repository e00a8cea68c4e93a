"""Issue 4: any user query gives results or InvalidQuery, never another exception."""
from __future__ import annotations

import pytest

from search_api.service import ResourceService
from storage.config import Settings
from storage.errors import InvalidQuery

WS = "ws-acme"

QUERIES = ["report-42.pdf", "exports/2026", '"unbalanced', "a AND", "field:", "((", "*",
           "a&b", "NOT x", "-", "\\", "", "   ", "a OR", "OR", "AND", ")", '"', "title:[a TO",
           "tags:", "storage_root:", ":", "::", "a:b:c", "https://example.com/x?y=1",
           "+", "-report", "report -x", "é", "日本語", "a\x00b", "{{input.x}}", "~", "^2",
           "report-42.pdf AND exports/2026", '"report-42.pdf"', "x" * 2500, "a*", "?",
           "content:zephyrquasar", "storage-root:reports", "tag:x", "NOT", "(a OR b",
           "id:01ABC", "seq:5", "expires:[0 TO 5]", "seq:abc"]


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    service = ResourceService(Settings.from_env(tmp_path_factory.mktemp("q") / "home"),
                              log=lambda msg: None)
    service.bind_slot(WS, "archive", "reports/acme")
    service.persist(WS, {"slot": "archive", "path": "exports/2026", "filename": "report-42.pdf"},
                    b"a plain text body with a&b and x in it\n")
    service.persist(WS, {"filename": "other.txt"}, b"nothing special\n")
    yield service
    service.close()


@pytest.mark.parametrize("q", QUERIES)
def test_query_gives_results_or_invalid_query(populated, q):
    try:
        page = populated.search(WS, q)
    except InvalidQuery as exc:
        assert exc.status == 400 and exc.message
        return
    assert page.total >= len(page.items) >= 0


@pytest.mark.parametrize("q", ["report-42.pdf", "exports/2026"])
def test_punctuated_user_text_just_works(populated, q):
    page = populated.search(WS, q)
    assert [r.filename for r in page.items] == ["report-42.pdf"]


def test_empty_and_star_match_everything(populated):
    assert populated.search(WS, "").total == 2
    assert populated.search(WS, "*").total == 2



def test_punctuated_user_text_is_searched_literally(service):
    """Words the parser would read as syntax (10:30, it's, a URL) just work."""
    res = service.persist("ws-q", {"filename": "minutes.txt"},
                          b"meeting at 10:30, see https://example.com/a - it's fine").resource
    for q in ("10:30", "it's", "https://example.com/a", "meeting 10:30"):
        assert [r.uri for r in service.search("ws-q", q).items] == [res.uri], q


def test_a_query_of_only_exclusions_means_everything_but(service):
    kept = service.persist("ws-q", {"filename": "kept.txt"}, b"alpha text").resource
    service.persist("ws-q", {"filename": "gone.txt"}, b"draft text")
    assert [r.uri for r in service.search("ws-q", "-draft").items] == [kept.uri]

"""Issue 14, item 3: user content never runs as script on the service's origin.

Declared content types are parsed and normalised at persist (one type/subtype + charset;
lists, empty parameters, CR/LF and non-ASCII are 400s). Served content carries nosniff;
only a real PDF is unsandboxed, and anything outside a short inert list is a download.
A real Chromium proves the old vectors no longer script the origin."""
from __future__ import annotations

import sqlite3

import pytest

from server import error_body, ok_body, upload
from test_web import browser, chromium_path  # noqa: F401 - real Chromium fixtures

WS = "/v1/ws-acme"
HTML = b"<html><body><script>alert('xss')</script>hello</body></html>"


@pytest.mark.parametrize("declared", [
    "application/pdf,text/html", "application/pdf;,text/html", "text/html\r\nX-A: b",
    "text/pl\u00e1in", "text/plain; charset=\"a\r\n\"", "noslash", "a/b/c", "text/ plain",
])
def test_malformed_content_types_are_400(api_server, declared):
    with api_server.client("write") as c:
        err = error_body(upload(c, b"x", {"filename": "x.bin", "content-type": declared}),
                         400, "invalid_spec")
        assert "content-type" in err["message"]


def test_content_types_are_normalised(api_server):
    with api_server.client("write") as c:
        rec = ok_body(upload(c, b"a,b\n1,2\n", {"filename": "n.csv",
                                               "content-type": "Text/CSV; Charset=UTF-8; x=1"}),
                      201)["data"]
        assert rec["content-type"] == "text/csv; charset=utf-8"


@pytest.mark.parametrize("declared,inline,sandbox", [
    ("text/html", False, True), ("image/svg+xml", False, True), ("text/xml", False, True),
    ("text/plain", True, True), ("image/png", True, True), ("application/pdf", True, False),
])
def test_served_headers_by_type(api_server, declared, inline, sandbox):
    with api_server.client("write") as c:
        rec = ok_body(upload(c, HTML, {"filename": "page", "content-type": declared}),
                      201)["data"]
        r = c.get(f"{WS}/resources/content", params={"uri": rec["uri"]})
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"].startswith("inline" if inline else "attachment")
        assert ("content-security-policy" in r.headers) == sandbox
        if sandbox:
            assert "sandbox" in r.headers["content-security-policy"]


def test_legacy_record_with_a_pdf_list_type_does_not_script_the_origin(api_server, browser):
    """A record written before normalisation with ``application/pdf,text/html``: its
    signed link is served as an inert download, and no script of it runs."""
    with api_server.client("write") as c:
        rec = ok_body(upload(c, HTML, {"filename": "evil.html", "content-type": "text/plain"}),
                      201)["data"]
        conn = sqlite3.connect(api_server.home / "catalog.db")
        with conn:
            conn.execute("UPDATE resources SET content_type = ? WHERE uri = ?",
                         ("application/pdf,text/html", rec["uri"]))
        conn.close()
        url = ok_body(c.get(f"{WS}/resources/url", params={"uri": rec["uri"]}))["data"]["url"]
    head = httpx_get(url)
    assert head.headers["content-type"].startswith("application/octet-stream")
    assert head.headers["content-disposition"].startswith("attachment")
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(url)
    except Exception:          # noqa: BLE001 - an attachment aborts the navigation
        pass
    page.wait_for_timeout(300)
    assert dialogs == []
    page.close()


def httpx_get(url: str):
    import httpx
    return httpx.get(url, timeout=30)

"""The operator web view and the picker in a real Chromium (Debian's, driven by Playwright)
against a real `resources serve`.

Chromium is installed with apt-get when missing (never `playwright install`). Every
page is screenshotted under tmp_path; docs/screenshots/{search,resource}.png are written
when missing or when RESOURCES_UPDATE_SCREENSHOTS=1 (so a test run leaves git clean).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

from server import FIXTURES, ROOT, Server, create_key, start_server, stop_server, upload  # noqa: E402

WS = "ws-acme"
XSS = "<script>alert(1)</script>"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
DOC_SHOTS = ROOT / "docs" / "screenshots"
MISSING_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

expect.set_options(timeout=10_000)


# -- the browser --------------------------------------------------------------------------------
def _find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium; installed through apt when missing."""
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        pytest.fail("Debian's chromium is missing and installing it needs root: "
                    "run `apt-get install chromium` (make test does it through .ci/sysdeps.sh)")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run([*prefix, "env", "DEBIAN_FRONTEND=noninteractive", *cmd],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    found = _find_chromium()
    if not found:
        pytest.fail("apt-get installed chromium but no binary was found")
    return found


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# -- the server and its resources -------------------------------------------------------------
@dataclass
class Site:
    server: Server
    ids: dict[str, str] = field(default_factory=dict)
    uris: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base

    def url(self, path: str) -> str:
        return f"{self.server.base}{path}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    server = start_server(tmp_path_factory.mktemp("web"))
    s = Site(server)
    try:
        with server.client("admin") as c:
            r = c.put(f"/v1/{WS}/slots/archive", json={"connection": "platform",
                                                       "root": "media/acme"})
            assert r.status_code == 200, r.text
            run = {"workflow-id": "run-42", "flow": "monthly"}

            def put(name: str, body: bytes, spec: dict, ws: str = WS, client=c) -> None:
                r = upload(client, body, spec, ws=ws)
                assert r.status_code == 201, r.text
                s.ids[name] = r.json()["data"]["id"]
                s.uris[name] = r.json()["data"]["uri"]

            put("pdf", (FIXTURES / "report-multipage.pdf").read_bytes(),
                {**run, "step": "render", "filename": "report-multipage.pdf",
                 "display-name": "Quarterly report", "tags": ["finance"]})
            put("notes", (FIXTURES / "notes.md").read_bytes(),
                {**run, "step": "collect", "filename": "notes.md"})
            put("csv", (FIXTURES / "data.csv").read_bytes(),
                {**run, "step": "collect", "filename": "data.csv", "tier": "ephemeral"})
            put("json", (FIXTURES / "document.json").read_bytes(),
                {**run, "step": "summarize", "type": "kv", "filename": "summary.json"})
            put("image", (FIXTURES / "image.png").read_bytes(),
                {**run, "step": "render", "slot": "archive", "path": "images",
                 "filename": "logo.png"})
            put("stray", (FIXTURES / "image.png").read_bytes(), {"filename": "stray.png"})
            put("xss", f"xssmarker {XSS} and <img src=x onerror=alert(2)> end\n".encode(),
                {"filename": "<svg onload=alert(3)>.txt", "display-name": XSS,
                 "content-type": "text/plain", "tags": [XSS]})
            put("html", b"<html><body>htmlmarker<script>alert(4)</script></body></html>",
                {"filename": "page.html", "content-type": "text/html"})
        with server.client("other") as o:
            put("other", b"otherworkspaceword lives elsewhere\n", {"filename": "secret.txt"},
                ws="ws-other", client=o)
        yield s
    finally:
        stop_server(server)


def new_page(browser: Browser, width: int = 1280, height: int = 860) -> tuple[BrowserContext, Page]:
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    return ctx, ctx.new_page()


def sign_in(page: Page, site: Site, key: str = "write") -> None:
    page.goto(site.url("/ui/login"))
    page.fill("#key", site.server.keys.get(key, key))
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/ui/{WS}/search$"))


def search(page: Page, site: Site, q: str, **params: str) -> None:
    from urllib.parse import urlencode
    page.goto(site.url(f"/ui/{WS}/search?" + urlencode({"q": q, **params})))


def doc_shot(page: Page, name: str, tmp_path: Path, full_page: bool = False) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=full_page)
    target = DOC_SHOTS / name
    if os.environ.get("RESOURCES_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=full_page)


def facet(page: Page, key: str) -> int:
    return int(page.locator(f'[data-facet="{key}"]').inner_text())


# -- the journeys -----------------------------------------------------------------------------------
def test_search_open_preview_download_and_signed_link(site: Site, browser: Browser,
                                                      tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        # An empty query browses newest first: the last persist comes first.
        expect(page.locator("#total")).to_have_text("8")
        with site.server.client("read") as c:
            newest = c.get(f"/v1/{WS}/resources", params={"limit": 1}).json()["data"]["items"][0]
        expect(page.locator("a.title").first).to_have_text(newest["display-name"])
        page.screenshot(path=str(tmp_path / "browse.png"), full_page=True)

        page.fill("input[name=q]", "zephyrquasar")
        page.press("input[name=q]", "Enter")
        expect(page.locator("#total")).to_have_text("1")
        expect(page.locator(".snippet b").first).to_have_text("zephyrquasar")
        assert facet(page, "type:file") == 1 and facet(page, "type:result") == 0
        assert facet(page, "tier:retained") == 1 and facet(page, "tier:ephemeral") == 0
        doc_shot(page, "search.png", tmp_path)

        page.click("a.title")
        expect(page).to_have_url(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        expect(page.locator("h1")).to_have_text("Quarterly report")
        expect(page.locator("#preview")).to_contain_text("Quarterly revenue report for Acme")
        expect(page.locator("#uri")).to_have_text(site.uris["pdf"])
        expect(page.locator("#run-link")).to_have_attribute("href", f"/ui/{WS}/workflows/run-42")
        expect(page.locator("#content-indexed")).to_have_text("yes")
        doc_shot(page, "resource.png", tmp_path, full_page=True)

        with page.expect_download() as info:
            page.click("#download")
        download = info.value
        assert download.suggested_filename == "report-multipage.pdf"
        assert Path(download.path()).read_bytes() == (FIXTURES / "report-multipage.pdf").read_bytes()

        page.click("form[data-signed-link] button")
        expect(page.locator("#signed-url")).to_have_value(re.compile(r"/signed/"))
        link = page.input_value("#signed-url")
        r = httpx.get(link)          # no cookie, no key: the signature is the credential
        assert r.status_code == 200 and r.content == (FIXTURES / "report-multipage.pdf").read_bytes()
        page.screenshot(path=str(tmp_path / "resource-signed.png"), full_page=True)
    finally:
        ctx.close()


def test_browse_pages_with_the_cursor(site: Site, browser: Browser) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        search(page, site, "", limit="3")
        seen: list[str] = []
        for _ in range(5):
            expect(page.locator("#total")).to_have_text("8")
            seen += [a.get_attribute("href") or "" for a in page.locator("a.title").all()]
            nxt = page.locator("a[rel=next]")
            if nxt.count() == 0:
                break
            nxt.click()
            expect(page.locator("text=first page")).to_be_visible()
        with site.server.client("read") as c:
            items = c.get(f"/v1/{WS}/resources", params={"limit": 100}).json()["data"]["items"]
        assert seen == [f"/ui/{WS}/resources/{i['id']}" for i in items]   # newest first
    finally:
        ctx.close()


def test_facets_agree_with_api_totals(site: Site, browser: Browser) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        with site.server.client("read") as c:
            for q, extra in (("", {}), ("", {"tier": "retained"}), ("report OR notes", {}),
                             ("", {"slot": "archive"})):
                search(page, site, q, **extra)
                expect(page.locator("#total")).to_be_visible()

                def total(**more: str) -> int:
                    r = c.get(f"/v1/{WS}/resources/search", params={"q": q, **extra, **more})
                    assert r.status_code == 200, r.text
                    return r.json()["meta"]["total"]
                assert int(page.inner_text("#total")) == total()
                for t in ("file", "result"):
                    assert facet(page, f"type:{t}") == total(type=t), (q, extra, t)
                if "tier" not in extra:
                    for t in ("retained", "ephemeral"):
                        assert facet(page, f"tier:{t}") == total(tier=t), (q, extra, t)
                if "slot" not in extra and total(**{"storage-root": "media/acme"}):
                    assert facet(page, "storage-root:media/acme") == \
                        total(**{"storage-root": "media/acme"})
    finally:
        ctx.close()


def test_edit_override_then_find_by_new_text(site: Site, browser: Browser, tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        search(page, site, "markdownheron")
        expect(page.locator("#total")).to_have_text("1")
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['notes']}"))
        expect(page.locator("#preview")).to_contain_text("markdownheron")
        page.fill("#ov-text", "kumquatnebula operator note")
        page.fill("#ov-tags", "curated, reviewed")
        page.select_option("#ov-raw", "false")
        page.click("button[value=save]")
        expect(page.locator("#search-index .ok")).to_be_visible()
        expect(page.locator("#ov-text")).to_have_value("kumquatnebula operator note")
        expect(page.locator("#ov-tags")).to_have_value("curated, reviewed")
        page.screenshot(path=str(tmp_path / "resource-overrides.png"), full_page=True)

        search(page, site, "kumquatnebula")
        expect(page.locator("#total")).to_have_text("1")
        expect(page.locator("a.title")).to_have_text("notes.md")
        expect(page.locator(".snippet b").first).to_have_text("kumquatnebula")
        search(page, site, "markdownheron")          # the override text replaced the content
        expect(page.locator("#total")).to_have_text("0")
        with site.server.client("read") as c:
            r = c.get(f"/v1/{WS}/resources/search-index", params={"uri": site.uris["notes"]})
            assert r.json()["data"]["search-index"] == {
                "text": "kumquatnebula operator note", "tags": ["curated", "reviewed"],
                "source-label": None, "include-raw-content": False}
    finally:
        ctx.close()


def test_workflow_run_page(site: Site, browser: Browser, tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        page.click("#run-link")
        expect(page).to_have_url(site.url(f"/ui/{WS}/workflows/run-42"))
        expect(page.locator("#run-total")).to_have_text("5")
        steps = page.locator("section.step")
        expect(steps).to_have_count(3)
        assert [steps.nth(i).get_attribute("data-step") for i in range(3)] == \
            ["collect", "render", "summarize"]
        collect = page.locator('section[data-step="collect"]')
        expect(collect.locator("tbody tr")).to_have_count(2)
        expect(collect.locator(".tier-ephemeral")).to_have_text("ephemeral")
        render = page.locator('section[data-step="render"]')
        expect(render.locator("tbody a")).to_have_text(["Quarterly report", "logo.png"])
        expect(render).to_contain_text("1.7 KiB")
        page.screenshot(path=str(tmp_path / "workflow.png"), full_page=True)
        page.click("text=summary.json")
        expect(page.locator("#preview")).to_contain_text('"')
        assert json.loads(page.inner_text("#preview")) == \
            json.loads((FIXTURES / "document.json").read_bytes())
    finally:
        ctx.close()


def test_picker_hands_back_the_uri(site: Site, browser: Browser, tmp_path: Path) -> None:
    ctx, opener = new_page(browser)
    try:
        sign_in(opener, site)
        opener.evaluate("""() => { window.__picked = [];
            window.addEventListener('message', e => window.__picked.push({data: e.data, origin: e.origin})); }""")
        with ctx.expect_page() as popup:
            opener.evaluate(f"() => window.open('/ui/{WS}/picker?slot=archive&accept=image/*')")
        picker = popup.value
        picker.wait_for_load_state()
        # Only the image in the slot: not the stray image, not the PDF.
        expect(picker.locator("#total")).to_have_text("1")
        expect(picker.locator(".pick-name")).to_have_text(["logo.png"])
        picker.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert picker.locator(".pick img").evaluate("img => img.naturalWidth") == 16
        picker.screenshot(path=str(tmp_path / "picker.png"), full_page=True)
        picker.click(".pick button")
        expect(picker.locator("#picked-status")).to_contain_text(site.uris["image"])
        opener.wait_for_function("() => window.__picked.length === 1")
        got = opener.evaluate("() => window.__picked")[0]
        assert got == {"data": {"type": "resource-picked", "uri": site.uris["image"]},
                       "origin": site.base}

        # With a return path: a redirect to it carrying the uri.
        picker.goto(site.url(f"/ui/{WS}/picker?slot=archive&accept=image%2F*"
                             f"&return=%2Fui%2F{WS}%2Fsearch%3Ffrom%3Dpicker"))
        picker.click(".pick button")
        expect(picker).to_have_url(re.compile(r"from=picker&uri="))
        assert parse_qs(urlsplit(picker.url).query)["uri"] == [site.uris["image"]]
        opener.wait_for_function("() => window.__picked.length === 2")
        picker.screenshot(path=str(tmp_path / "picker-returned.png"))

        # The image's own page: provenance and a preview streamed with the session.
        picker.goto(site.url(f"/ui/{WS}/resources/{site.ids['image']}"))
        expect(picker.locator("main")).to_contain_text("media/acme")
        picker.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert picker.locator("img.preview-image").evaluate("img => img.naturalWidth") == 16
        picker.screenshot(path=str(tmp_path / "resource-image.png"), full_page=True)

        # A return path off this site is refused.
        for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "x/y"):
            from urllib.parse import quote
            r = picker.goto(site.url(f"/ui/{WS}/picker?slot=archive&return={quote(bad, safe='')}"))
            assert r is not None and r.status == 400, bad
        # Also on the form post itself.
        picker.goto(site.url(f"/ui/{WS}/picker?slot=archive&accept=image/*"))
        csrf = picker.input_value(".pick input[name=csrf]")
        r = picker.request.post(site.url(f"/ui/{WS}/picker/choose"), max_redirects=0,
                                form={"csrf": csrf, "uri": site.uris["image"],
                                      "return": "//evil.example/"})
        assert r.status == 400
    finally:
        ctx.close()


def test_script_in_name_and_content_renders_inert(site: Site, browser: Browser,
                                                  tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        sign_in(page, site)
        search(page, site, "xssmarker")
        expect(page.locator("#total")).to_have_text("1")
        expect(page.locator("a.title")).to_have_text(XSS)
        expect(page.locator(".snippet")).to_contain_text(XSS)
        expect(page.locator(".snippet b")).to_have_text(["xssmarker"])
        assert page.locator("main script, main img, main svg").count() == 0
        page.screenshot(path=str(tmp_path / "xss-search.png"))
        page.click("a.title")
        expect(page.locator("h1")).to_have_text(XSS)
        expect(page.locator("#preview")).to_contain_text(f"xssmarker {XSS} and <img src=x onerror=alert(2)>")
        expect(page.locator("main")).to_contain_text("<svg onload=alert(3)>.txt")
        assert page.locator("main script, main svg, main img").count() == 0
        page.screenshot(path=str(tmp_path / "xss-resource.png"), full_page=True)
        # Stored HTML opened through the web view runs sandboxed: no script of this origin.
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['html']}/content"))
        expect(page.locator("body")).to_contain_text("htmlmarker")
        page.wait_for_timeout(300)
        assert dialogs == []
        # The listener works: a real alert is caught.
        page.goto(site.url(f"/ui/{WS}/search"))
        page.evaluate("() => setTimeout(() => alert('control'), 0)")
        page.wait_for_timeout(300)
        assert dialogs == ["control"]
    finally:
        ctx.close()


def test_form_post_without_csrf_token_is_refused(site: Site, browser: Browser,
                                                 tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['csv']}"))
        page.fill("#ov-text", "should never be saved")
        page.evaluate("() => document.querySelector('#overrides-form input[name=csrf]').remove()")
        with page.expect_response(lambda r: r.request.method == "POST") as info:
            page.click("button[value=save]")
        assert info.value.status == 403
        expect(page.locator(".error")).to_contain_text("CSRF")
        page.screenshot(path=str(tmp_path / "csrf-403.png"))
        base = f"/ui/{WS}/resources/{site.ids['csv']}"
        for path, form in ((f"{base}/search-index", {"text": "x"}),
                           (f"{base}/search-index", {"text": "x", "csrf": "forged"}),
                           (f"{base}/signed-url", {}),
                           (f"/ui/{WS}/picker/choose", {"uri": site.uris["csv"]}),
                           ("/ui/logout", {})):
            r = page.request.post(site.url(path), form=form, max_redirects=0)
            assert r.status == 403, (path, form, r.status)
        with site.server.client("read") as c:
            r = c.get(f"/v1/{WS}/resources/search-index", params={"uri": site.uris["csv"]})
            assert r.json()["data"]["search-index"]["text"] is None
        # Sign-in itself needs the token of the sign-in page.
        fresh = browser.new_context()
        r = fresh.request.post(site.url("/ui/login"), form={"key": site.server.keys["write"]},
                               max_redirects=0)
        assert r.status == 403
        fresh.close()
    finally:
        ctx.close()


def test_other_workspace_is_404_and_sessions_end(site: Site, browser: Browser,
                                                  tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        # Not signed in: every page leads to sign-in; a bad key is refused.
        r = page.goto(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        page.fill("#key", "rk_nope_nope")
        page.click("form[action='/ui/login'] button[type=submit]")
        expect(page.locator(".error")).to_contain_text("not valid")
        page.fill("#key", site.server.keys["read"])
        page.click("form[action='/ui/login'] button[type=submit]")
        expect(page).to_have_url(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        assert page.locator("#overrides-form").count() == 0     # read-only key
        page.screenshot(path=str(tmp_path / "login-next.png"))

        missing = page.goto(site.url(f"/ui/{WS}/resources/{MISSING_ID}"))
        assert missing is not None and missing.status == 404
        missing_text = page.inner_text("main")
        for path in ("/ui/ws-other/search", f"/ui/ws-other/resources/{site.ids['other']}",
                     f"/ui/{WS}/resources/{site.ids['other']}",
                     f"/ui/{WS}/resources/{site.ids['other']}/content",
                     "/ui/ws-other/workflows/run-42", "/ui/ws-other/picker"):
            r = page.goto(site.url(path))
            assert r is not None and r.status == 404, path
            assert page.inner_text("main") == missing_text, path
            assert "otherworkspaceword" not in page.content()
        page.screenshot(path=str(tmp_path / "other-404.png"))
        r = page.request.post(site.url(f"/ui/ws-other/resources/{site.ids['other']}/signed-url"),
                              form={"csrf": "x"}, max_redirects=0)
        assert r.status == 404

        # Sign out ends the session.
        page.goto(site.url(f"/ui/{WS}/search"))
        page.click("text=Sign out")
        expect(page).to_have_url(site.url("/ui/login"))
        page.goto(site.url(f"/ui/{WS}/search"))
        expect(page).to_have_url(re.compile(r"/ui/login"))

        # A removed key ends its sessions on the next request.
        key = create_key(site.server.home, WS, "resources.read")
        sign_in(page, site, key)
        with sqlite3.connect(site.server.home / "catalog.db") as db:
            db.execute("DELETE FROM api_keys WHERE id = ?", (key.split("_")[1],))
        page.goto(site.url(f"/ui/{WS}/search"))
        expect(page).to_have_url(re.compile(r"/ui/login"))
    finally:
        ctx.close()


def test_phone_layout_has_no_horizontal_scroll(site: Site, browser: Browser,
                                               tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, device_scale_factor=2)
    page = ctx.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    try:
        sign_in(page, site)
        for name, path in (("phone-search.png", f"/ui/{WS}/search?q=report"),
                           ("phone-resource.png", f"/ui/{WS}/resources/{site.ids['pdf']}"),
                           ("phone-workflow.png", f"/ui/{WS}/workflows/run-42"),
                           ("phone-picker.png", f"/ui/{WS}/picker?slot=archive&accept=image/*")):
            page.goto(site.url(path))
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, name
            page.screenshot(path=str(tmp_path / name), full_page=True)
        assert console == []       # no CSP violation, no script error
    finally:
        ctx.close()

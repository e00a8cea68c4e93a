"""Accessibility: axe-core (the npm package, injected by Playwright into Debian's
Chromium) finds no serious or critical WCAG 2.1 A/AA violation on any page of the web
view or the embedded picker, at laptop and phone width.

axe-core is installed with npm into the venv when missing (like Chromium through apt).
The browser context bypasses CSP only so that the test can inject axe's script.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page

from test_web import (WS, MISSING_ID, Site, browser, chromium_path, sign_in,  # noqa: F401
                      site)

AXE_VERSION = "4.14.1"
AXE_DIR = Path(sys.prefix) / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: apt-get install npm (axe-core comes from npm)")
        proc = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund",
                               "--prefix", str(AXE_DIR), f"axe-core@{AXE_VERSION}"],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not AXE_JS.exists():
            pytest.fail(f"npm install axe-core failed: {proc.stderr[-2000:]}")
    return AXE_JS.read_text()


def serious(page: Page, axe_source: str) -> list[dict]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate("""(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})
        .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))""", TAGS)
    return [v for v in result if v["impact"] in ("serious", "critical")]


def _pages(site: Site) -> list[tuple[str, str]]:
    ids = site.ids
    return [
        ("search", f"/ui/{WS}/search"),
        ("search-query", f"/ui/{WS}/search?q=report"),
        ("search-table", f"/ui/{WS}/search?view=table&sort=-size"),
        ("search-empty", f"/ui/{WS}/search?" + urlencode({"q": "report", "tag": "nope"})),
        ("search-syntax", f"/ui/{WS}/search?" + urlencode({"q": "(a OR b"})),
        ("resource-pdf", f"/ui/{WS}/resources/{ids['pdf']}"),
        ("resource-csv", f"/ui/{WS}/resources/{ids['csv']}"),
        ("resource-json", f"/ui/{WS}/resources/{ids['json']}"),
        ("resource-image", f"/ui/{WS}/resources/{ids['image']}"),
        ("resource-text", f"/ui/{WS}/resources/{ids['notes']}"),
        ("workflow", f"/ui/{WS}/workflows/run-42"),
        ("picker", f"/ui/{WS}/picker?slot=archive&accept=image/*"),
        ("not-found", f"/ui/{WS}/resources/{MISSING_ID}"),
        ("unknown-path", "/ui/no/such/page"),
    ]


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_axe_violations(site: Site, browser: Browser, axe_source: str,  # noqa: F811
                                   width: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 860}, bypass_csp=True)
    page = ctx.new_page()
    found: dict[str, list[dict]] = {}
    try:
        page.goto(site.url("/ui/login"))
        found["login"] = serious(page, axe_source)
        sign_in(page, site)
        for name, path in _pages(site):
            page.goto(site.url(path))
            found[name] = serious(page, axe_source)
        with site.server.client("admin") as c:
            origin = "http://127.0.0.1:9"
            c.put(f"/v1/{WS}/picker/origins", json={"origins": [origin]}).raise_for_status()
            url = c.post(f"/v1/{WS}/picker/sessions",
                         json={"origin": origin, "accept": "image/*,application/pdf"}
                         ).json()["data"]["url"]
        page.goto(url)
        found["embedded-picker"] = serious(page, axe_source)
    finally:
        ctx.close()
    bad = {k: v for k, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)
    assert len(found) == len(_pages(site)) + 2        # every page was checked

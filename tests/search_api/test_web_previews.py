"""Resource page previews in a real Chromium: CSV as a table, JSON folded, text with
line numbers, tiny images scaled up, a copy-uri button; hostile JSON stays inert."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from playwright.sync_api import Browser, expect

from server import FIXTURES, upload
from test_web import (WS, Site, browser, chromium_path, new_page,  # noqa: F401
                      sign_in, site)


def test_csv_json_text_and_image_previews(site: Site, browser: Browser,  # noqa: F811
                                          tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        sign_in(page, site)
        # CSV: a table of the first rows, header as column heads.
        rows = list(csv.reader((FIXTURES / "data.csv").read_text().splitlines()))
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['csv']}"))
        table = page.locator("#csv-preview")
        expect(table.locator("thead th")).to_have_text(rows[0])
        expect(table.locator("tbody tr")).to_have_count(len(rows) - 1)
        expect(table.locator("tbody tr").first.locator("td")).to_have_text(rows[1])
        page.screenshot(path=str(tmp_path / "csv.png"), full_page=True)

        # JSON: folded tree, first two levels open, deeper ones closed until clicked.
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['json']}"))
        tree = page.locator("#json-tree")
        expect(tree).to_contain_text('"Fruit inventory"')
        expect(tree.locator("details.jn").first).to_have_attribute("open", "")
        deep = tree.locator("details.jn details.jn details.jn").first       # items[0]
        assert deep.get_attribute("open") is None
        apple = deep.locator(".jv-str", has_text='"apple"')
        expect(apple).to_have_count(1)
        expect(apple).to_be_hidden()
        deep.locator("summary").first.click()
        expect(apple).to_be_visible()
        assert json.loads(page.inner_text("#preview")) == \
            json.loads((FIXTURES / "document.json").read_bytes())
        page.screenshot(path=str(tmp_path / "json.png"), full_page=True)

        # Text: one line number per line.
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['notes']}"))
        lines = (FIXTURES / "notes.md").read_text().count("\n") + 1
        gutter = page.inner_text(".numbered .gutter").split()
        assert gutter == [str(i) for i in range(1, lines + 1)]

        # A 16 x 16 image is shown at a readable size, crisp.
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['image']}"))
        img = page.locator("img.preview-image")
        expect(img).to_have_class("preview-image upscaled")
        box = img.bounding_box()
        assert box and box["width"] >= 128
        assert img.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"

        # Hostile keys and values in JSON are text.
        with site.server.client("write") as c:
            r = upload(c, json.dumps({"<img src=x onerror=alert(1)>":
                                      ["<script>alert(2)</script>"]}).encode(),
                       {"type": "kv", "filename": "hostile.json"})
            hostile = r.json()["data"]["id"]
        page.goto(site.url(f"/ui/{WS}/resources/{hostile}"))
        expect(page.locator("#json-tree")).to_contain_text("<script>alert(2)</script>")
        assert page.locator("#json-tree script, #json-tree img").count() == 0
        assert dialogs == []
    finally:
        ctx.close()


def test_copy_uri_button(site: Site, browser: Browser) -> None:  # noqa: F811
    ctx, page = new_page(browser)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    try:
        sign_in(page, site)
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        page.click("#copy-uri")
        expect(page.locator("#copy-status")).to_have_text("Copied.")
        assert page.evaluate("() => navigator.clipboard.readText()") == site.uris["pdf"]
    finally:
        ctx.close()

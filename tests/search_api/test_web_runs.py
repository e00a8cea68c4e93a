"""The workflow run page in a real Chromium: timeline, a zip of the whole run streamed,
and deleting the run's ephemeral outputs only after typing the run id."""
from __future__ import annotations

import zipfile
from pathlib import Path

from playwright.sync_api import Browser, expect

from server import FIXTURES
from test_web import (WS, Site, browser, chromium_path, new_page,  # noqa: F401
                      sign_in, site)


def test_timeline_zip_and_ephemeral_cleanup(site: Site, browser: Browser,  # noqa: F811
                                            tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site, "read")
        page.goto(site.url(f"/ui/{WS}/workflows/run-42"))
        expect(page.locator(".timeline li")).to_have_count(3)
        assert page.get_attribute("#run-first", "datetime") <= \
            page.get_attribute("#run-last", "datetime")
        assert page.locator("#delete-ephemeral").count() == 0          # read-only key

        with page.expect_download() as info:
            page.click("#run-zip")
        path = info.value.path()
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
            assert sorted(zf.namelist()) == ["collect/data.csv", "collect/notes.md",
                                             "render/logo.png", "render/report-multipage.pdf",
                                             "summarize/summary.json"]
            assert zf.read("render/report-multipage.pdf") == \
                (FIXTURES / "report-multipage.pdf").read_bytes()
            assert zf.read("collect/data.csv") == (FIXTURES / "data.csv").read_bytes()

        ctx.close()
        ctx, page = new_page(browser)
        sign_in(page, site, "write")
        page.goto(site.url(f"/ui/{WS}/workflows/run-42"))
        page.click("#delete-ephemeral summary")
        page.screenshot(path=str(tmp_path / "run-delete.png"), full_page=True)
        page.fill("#confirm-run", "run-4")                               # a typo
        with page.expect_response(lambda r: r.request.method == "POST") as resp:
            page.click("#delete-ephemeral button[type=submit]")
        assert resp.value.status == 400
        with site.server.client("read") as c:
            assert c.get(f"/v1/{WS}/workflows/run-42/resources").json()["meta"]["total"] == 5
        page.goto(site.url(f"/ui/{WS}/workflows/run-42"))
        page.click("#delete-ephemeral summary")
        page.fill("#confirm-run", "run-42")
        page.click("#delete-ephemeral button[type=submit]")
        expect(page.locator("#deleted-status")).to_have_text("Deleted 1 ephemeral output.")
        expect(page.locator("#run-total")).to_have_text("4")
        assert page.locator("#delete-ephemeral").count() == 0           # none left
        with site.server.client("read") as c:
            items = c.get(f"/v1/{WS}/workflows/run-42/resources").json()["data"]["items"]
            assert {i["tier"] for i in items} == {"retained"} and len(items) == 4
        page.screenshot(path=str(tmp_path / "run-after.png"), full_page=True)
    finally:
        ctx.close()

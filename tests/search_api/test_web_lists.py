"""Operator lists in a real Chromium: the table mode sorts by each column, every API
filter round-trips through the URL and the form, empty results offer a way out, a query
error shows the syntax, "/" focuses search, unknown /ui/ paths are an HTML 404."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from playwright.sync_api import Browser, Page, expect

from test_web import (WS, Site, browser, chromium_path, doc_shot, new_page,  # noqa: F401
                      search, sign_in, site)


def _column(page: Page, col: str) -> list[str]:
    return page.locator(f'#results-table td[data-col="{col}"]').all_inner_texts()


def test_table_mode_sorts_by_each_column(site: Site, browser: Browser,  # noqa: F811
                                         tmp_path: Path) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        search(page, site, "", limit="100")
        page.click("#view-table")
        expect(page).to_have_url(re.compile(r"view=table"))
        expect(page.locator("#results-table tbody tr")).to_have_count(8)
        with site.server.client("read") as c:
            api = c.get(f"/v1/{WS}/resources", params={"limit": 100}).json()["data"]["items"]
        by_id = {i["id"]: i for i in api}
        # The exact time is on hover; the cell says how long ago.
        first_time = page.locator('#results-table td[data-col="age"] time').first
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", first_time.get_attribute("title") or "")
        assert re.search(r"ago|just now", first_time.inner_text())

        def ids() -> list[str]:
            return [r.get_attribute("data-id") or ""
                    for r in page.locator("#results-table tbody tr").all()]

        expected = {
            "name": lambda i: i["display-name"].casefold(),
            "type": lambda i: (i["content-type"].lower(), i["type"]),
            "size": lambda i: i["size"],
            "step": lambda i: (i["flow"] or "", i["step"] or ""),
            "age": lambda i: i["created-at"],
        }
        for key, sort_key in expected.items():
            page.click(f'th a[data-sort="{key}"]')
            expect(page).to_have_url(re.compile(rf"sort={key}(&|$)"))
            expect(page.locator(f'th[aria-sort="ascending"] a[data-sort="{key}"]')).to_be_visible()
            got = [by_id[i] for i in ids()]
            want = sorted(api, key=sort_key, reverse=(key == "age"))   # age: newest first
            assert [sort_key(i) for i in got] == [sort_key(i) for i in want], key
            page.click(f'th a[data-sort="{key}"]')                  # again: descending
            expect(page).to_have_url(re.compile(rf"sort=-{key}(&|$)"))
            got = [by_id[i] for i in ids()]
            assert [sort_key(i) for i in got] == \
                [sort_key(i) for i in sorted(api, key=sort_key, reverse=(key != "age"))], key
        doc_shot(page, "search-table.png", tmp_path)
        # The search box keeps table mode and sort.
        page.fill("#q", "report OR notes")
        page.press("#q", "Enter")
        qs = parse_qs(urlsplit(page.url).query)
        assert qs["view"] == ["table"] and qs["sort"] == ["-age"] and qs["q"] == ["report OR notes"]
    finally:
        ctx.close()


FILTERS = {"tag": "finance", "workflow-id": "run-42", "flow": "monthly", "step": "render",
           "tier": "retained", "exclude-tier": "ephemeral", "accept": "image/*",
           "type": "file", "slot": "archive", "path-prefix": "images",
           "storage-root": "media/acme"}


def test_every_filter_round_trips_through_url_and_form(site: Site, browser: Browser  # noqa: F811
                                                       ) -> None:
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        with site.server.client("read") as c:
            for key, value in FILTERS.items():
                page.goto(site.url(f"/ui/{WS}/search?" + urlencode({key: value})))
                want = c.get(f"/v1/{WS}/resources/search", params={key: value}).json()
                assert int(page.inner_text("#total")) == want["meta"]["total"], key
                field = page.locator(f'form[role=search] [name="{key}"]')
                expect(field).to_have_value(value)
                # Submitting the form keeps the filter (and adds a query).
                page.fill("#q", "")
                page.click("form[role=search] details button[type=submit]")
                page.wait_for_url(lambda u: parse_qs(urlsplit(u).query).get(key) == [value])
                # Empty fields are left out of the URL.
                assert set(parse_qs(urlsplit(page.url).query)) == {key}, page.url
            # All at once, through the form only.
            page.goto(site.url(f"/ui/{WS}/search"))
            page.click("details.filters summary")
            page.fill('[name="tag"]', "finance")
            page.fill('[name="workflow-id"]', "run-42")
            page.fill('[name="step"]', "render")
            page.select_option('[name="exclude-tier"]', "ephemeral")
            page.click("form[role=search] details button[type=submit]")
            qs = parse_qs(urlsplit(page.url).query)
            assert qs["tag"] == ["finance"] and qs["workflow-id"] == ["run-42"] and \
                qs["step"] == ["render"] and qs["exclude-tier"] == ["ephemeral"]
            expect(page.locator("a.title")).to_have_text(["Quarterly report"])
    finally:
        ctx.close()


def test_empty_state_syntax_help_slash_404_and_zero_facets(
        site: Site, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        search(page, site, "report", tag="nosuchtag", step="render")
        expect(page.locator("#empty-state")).to_contain_text("Nothing matches these filters")
        page.screenshot(path=str(tmp_path / "empty.png"))
        page.click("#clear-filters")
        qs = parse_qs(urlsplit(page.url).query)
        assert qs == {"q": ["report"]}
        assert int(page.inner_text("#total")) >= 1

        r = page.goto(site.url(f"/ui/{WS}/search?" + urlencode({"q": "(a OR b"})))
        assert r is not None and r.status == 400
        expect(page.locator("#syntax-help")).to_be_visible()
        expect(page.locator("#syntax-help")).to_contain_text("the exact phrase")
        page.screenshot(path=str(tmp_path / "syntax-help.png"))

        # "/" focuses search from anywhere but a text field.
        search(page, site, "zephyrquasar")
        page.locator("#q").evaluate("e => e.blur()")
        expect(page.locator("#q")).not_to_be_focused()
        page.keyboard.press("/")
        expect(page.locator("#q")).to_be_focused()
        assert page.input_value("#q") == "zephyrquasar"          # the "/" was not typed

        # A zero count is not a link; a non-zero one is.
        expect(page.locator('[data-facet="type:result"]')).to_have_text("0")
        facets = page.locator("aside.facets")
        expect(facets.locator("span.facet-zero", has_text="result")).to_have_count(1)
        expect(facets.locator("a", has_text=re.compile(r"^result$"))).to_have_count(0)
        expect(facets.locator("a", has_text=re.compile(r"^file$"))).to_have_count(1)

        for path in (f"/ui/{WS}/nope", "/ui/no/such/page/at/all", f"/ui/{WS}/resources"):
            r = page.goto(site.url(path))
            assert r is not None and r.status == 404, path
            assert r.headers["content-type"].startswith("text/html"), path
            expect(page.locator("h1")).to_have_text("404 · Not found")
        page.screenshot(path=str(tmp_path / "404.png"))
    finally:
        ctx.close()


def test_phone_search_shows_results_before_facets(site: Site, browser: Browser,  # noqa: F811
                                                  tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, device_scale_factor=2)
    page = ctx.new_page()
    try:
        sign_in(page, site)
        for view in ("cards", "table"):
            page.goto(site.url(f"/ui/{WS}/search?" + urlencode({"q": "", "view": view})))
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, view
            results = page.locator("section.results").bounding_box()
            facets = page.locator("aside.facets").bounding_box()
            assert results and facets and results["y"] < facets["y"], view
            page.screenshot(path=str(tmp_path / f"phone-{view}.png"), full_page=True)
        # Tab order: the first result link comes before any facet link.
        order = page.evaluate("""() => [...document.querySelectorAll('main a')]
            .map(a => a.closest('aside') ? 'facet' : (a.classList.contains('title') ? 'result' : 'other'))""")
        assert order.index("result") < order.index("facet")
    finally:
        ctx.close()

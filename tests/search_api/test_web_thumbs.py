"""Thumbnails (Pillow, pdfium) in a real Chromium against a real server: made once,
shown in the picker and on resource pages; a decompression bomb and the slow PDF fixture
get none, are never retried, and do not hold up other requests."""
from __future__ import annotations

import importlib.util
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from server import FIXTURES, upload
from test_web import (WS, Site, browser, chromium_path, doc_shot, new_page,  # noqa: F401
                      sign_in, site)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries one tiny IDAT: a decompression bomb
    as Pillow sees it at open, a few dozen bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _slow_pdf(tmp: Path) -> bytes:
    spec = importlib.util.spec_from_file_location("slow_pdf", FIXTURES / "slow_pdf.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.make_slow_pdf(tmp / "slow.pdf")).read_bytes()


@pytest.fixture(scope="module")
def bad(site: Site, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Resources no thumbnail may come of (ids by name)."""
    ids: dict[str, str] = {}
    tmp = tmp_path_factory.mktemp("bad")
    with site.server.client("admin") as c:
        for name, body, ctype in (
                ("bomb", _png_header_only(30_000, 30_000), "image/png"),      # > 2x the cap
                ("warn-bomb", _png_header_only(8_000, 8_000), "image/png"),   # > the cap
                ("slow", _slow_pdf(tmp), "application/pdf")):
            r = upload(c, body, {"filename": f"{name}.{ctype.split('/')[1]}",
                                 "content-type": ctype, "tags": ["badthumb"]})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["data"]["id"]
    yield ids


def _thumb(site: Site, session: httpx.Client, id_: str, size: str = "small") -> httpx.Response:
    return session.get(site.url(f"/ui/{WS}/resources/{id_}/thumb"), params={"size": size})


def _signed_in_client(site: Site, browser: Browser) -> httpx.Client:  # noqa: F811
    """An HTTP client with the cookie of a real browser sign-in."""
    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        cookies = {c["name"]: c["value"] for c in ctx.cookies(site.url("/ui/"))}
    finally:
        ctx.close()
    return httpx.Client(cookies=cookies, timeout=60)


def test_thumbnails_in_picker_and_on_resource_pages(site: Site, browser: Browser,  # noqa: F811
                                                    tmp_path: Path) -> None:
    origin = "http://127.0.0.1:9"            # only minted for here, never framed
    with site.server.client("admin") as c:
        c.put(f"/v1/{WS}/picker/origins", json={"origins": [origin]}).raise_for_status()
        r = c.post(f"/v1/{WS}/picker/sessions",
                   json={"origin": origin, "accept": "image/png,application/pdf"})
        assert r.status_code == 201, r.text
        picker_url = r.json()["data"]["url"]
    ctx, page = new_page(browser, 900, 700)
    try:
        page.goto(picker_url)
        names = page.locator(".pick-name")
        expect(names.first).to_be_visible()
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        shown = {}
        for i in range(page.locator("button.pick").count()):
            button = page.locator("button.pick").nth(i)
            shown[button.get_attribute("data-name")] = button.locator("img.thumb").evaluate(
                "img => [img.naturalWidth, img.naturalHeight, img.hidden]")
        # logo.png and stray.png are 16 x 16: a thumbnail never upscales. The PDF's
        # first page is rendered to 256 px on its long edge.
        assert shown["logo.png"] == [16, 16, False]
        assert shown["Quarterly report"][1] == 256 and shown["Quarterly report"][2] is False
        page.screenshot(path=str(tmp_path / "picker-thumbs.png"))

        sign_in(page, site)
        page.goto(site.url(f"/ui/{WS}/resources/{site.ids['pdf']}"))
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        size = page.locator("img.preview-page").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert max(size) == 768 and min(size) > 0
        expect(page.locator("figure.pdf-page")).to_be_visible()
        doc_shot(page, "resource-pdf.png", tmp_path)
    finally:
        ctx.close()
    with _signed_in_client(site, browser) as s:
        again = _thumb(site, s, site.ids["pdf"], "large")
        assert again.status_code == 200 and again.headers["x-thumbnail"] == "hit"
        assert again.headers["content-type"] == "image/webp"
        # No thumbnail for types that are not images or PDFs, and unknown sizes are a 400.
        assert _thumb(site, s, site.ids["csv"]).status_code == 404
        assert _thumb(site, s, site.ids["pdf"], "huge").status_code == 400
        # Another workspace's resource is a 404 like everywhere else.
        assert _thumb(site, s, site.ids["other"]).status_code == 404


def test_bomb_and_slow_pdf_get_no_thumbnail_and_stall_nothing(
        site: Site, bad: dict[str, str], browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    with _signed_in_client(site, browser) as s:
        for name in ("bomb", "warn-bomb"):
            first = _thumb(site, s, bad[name])
            assert first.status_code == 404 and first.headers["x-thumbnail"] == "failed"
            assert "DecompressionBomb" in first.text, first.text
            second = _thumb(site, s, bad[name])           # remembered, never decoded again
            assert second.status_code == 404 and second.headers["x-thumbnail"] == "none"

        answered = threading.Event()
        slow: list[httpx.Response] = []

        def fetch_slow() -> None:
            with httpx.Client(cookies=s.cookies, timeout=60) as c:
                slow.append(_thumb(site, c, bad["slow"]))
            answered.set()

        t = threading.Thread(target=fetch_slow)
        t.start()
        try:
            # While pdfium is stuck in the slow PDF, pages and the API still answer.
            page_r = s.get(site.url(f"/ui/{WS}/search"), params={"q": "report"})
            assert page_r.status_code == 200 and "Quarterly report" in page_r.text
            with site.server.client("read") as c:
                assert c.get(f"/v1/{WS}/resources/search", params={"q": "report"}
                             ).json()["meta"]["total"] >= 1
            still_rendering = not answered.is_set()
        finally:
            t.join(60)
        assert still_rendering, "the slow PDF was answered before the other requests"
        # How long pdfium takes on the crafted PDF depends on the machine: past the bound
        # it is killed (404 "failed", then remembered as "none"); within it, a thumbnail.
        slow_failed = slow[0].status_code == 404
        if slow_failed:
            assert slow[0].headers["x-thumbnail"] == "failed" and "timeout" in slow[0].text
            again = _thumb(site, s, bad["slow"])
            assert again.status_code == 404 and again.headers["x-thumbnail"] == "none"
        else:
            assert slow[0].status_code == 200 and slow[0].headers["x-thumbnail"] == "made"
        # The worker was restarted after the kill: a good file still gets its thumbnail.
        ok = _thumb(site, s, site.ids["image"], "large")
        assert ok.status_code == 200 and ok.headers["x-thumbnail"] in ("made", "hit")

    ctx, page = new_page(browser)
    try:
        sign_in(page, site)
        page.goto(site.url(f"/ui/{WS}/resources/{bad['slow']}"))
        # The page renders (no stall) whatever the thumbnail's fate: the API answers
        # above say whether one was made (the figure's image may be a placeholder).
        expect(page.locator("h1")).to_be_visible()
        page.screenshot(path=str(tmp_path / "resource-slow-pdf.png"), full_page=True)
    finally:
        ctx.close()

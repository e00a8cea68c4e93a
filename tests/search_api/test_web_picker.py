"""The embeddable picker across origins, in a real Chromium against a real server.

A tiny embedding app (http.server on its own port, so another origin) mints a picker
session from its *backend* with its API key, embeds /ui/picker in an iframe and listens
for the picker's postMessage events. A second app on another port is not in the
allow-list: it cannot mint a session, and a token minted for the first app does not
frame there.
"""
from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from server import FIXTURES

from test_web import (WS, Site, browser, chromium_path, doc_shot, new_page,  # noqa: F401
                      site)


class EmbeddingApp:
    """An app of another origin: its backend holds the API key, its page holds none."""

    def __init__(self, site: Site, key: str) -> None:
        self.site, self.key = site, key
        self.minted: list[dict] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                qs = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/reuse":           # embed a token minted elsewhere
                    body = app.page(f"{app.site.base}/ui/picker?token={qs['token']}", "")
                else:
                    body = app.page(*app.mint(qs))
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def mint(self, qs: dict[str, str]) -> tuple[str, str]:
        """Server to server: (picker url, error text)."""
        r = httpx.post(f"{self.site.base}/v1/{WS}/picker/sessions",
                       headers={"Authorization": f"Bearer {self.key}"},
                       json={"origin": self.origin, **qs,
                             **({"write": True} if qs.get("write") else {})}, timeout=10)
        self.minted.append({"status": r.status_code, "body": r.json()})
        if r.status_code != 201:
            return "", r.json()["error"]["message"]
        return r.json()["data"]["url"], ""

    def page(self, picker_url: str, error: str) -> str:
        frame = (f'<iframe id="picker" title="Resource picker" src="{html.escape(picker_url)}" '
                 'style="width:100%;height:420px;border:1px solid #ccc"></iframe>'
                 if picker_url else "")
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Workflow app</title></head><body>
<h1>Workflow app</h1><p>Attach a file: <output id="chosen">none</output></p>
<p id="mint-error">{html.escape(error)}</p>
<script>
window.__messages = []; window.__loaded = false;
window.addEventListener("message", function (e) {{
  window.__messages.push({{data: e.data, origin: e.origin}});
  if (e.origin !== {json.dumps(self.site.base)}) return;   // only the picker's origin
  if (e.data.type === "resource-picked") document.getElementById("chosen").textContent = e.data.uri;
  if (e.data.type === "resized") document.getElementById("picker").style.height = e.data.height + "px";
}});
</script>
{frame}
<script>
var f = document.getElementById("picker");
if (f) f.addEventListener("load", function () {{ window.__loaded = true; }});
</script></body></html>"""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def apps(site: Site) -> Iterator[tuple[EmbeddingApp, EmbeddingApp]]:
    allowed = EmbeddingApp(site, site.server.keys["read"])
    refused = EmbeddingApp(site, site.server.keys["read"])
    with site.server.client("admin") as c:
        r = c.put(f"/v1/{WS}/picker/origins", json={"origins": [allowed.origin]})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["origins"] == [allowed.origin]
    try:
        yield allowed, refused
    finally:
        allowed.close()
        refused.close()


def test_embedded_picker_hands_the_uri_to_the_allowed_origin(
        site: Site, apps: tuple[EmbeddingApp, EmbeddingApp], browser: Browser,  # noqa: F811
        tmp_path: Path) -> None:
    allowed, _ = apps
    ctx, page = new_page(browser, 900, 700)
    try:
        page.goto(f"{allowed.origin}/?accept=image/*")
        assert allowed.minted[-1]["status"] == 201
        frame = page.frame_locator("#picker")
        # Both images, newest first; no app navigation inside the frame.
        expect(frame.locator("#total")).to_have_text("2")
        expect(frame.locator(".pick-name")).to_have_text(["stray.png", "logo.png"])
        assert frame.locator("header, nav, a[href^='/ui/ws']").count() == 0
        page.wait_for_function("() => window.__messages.some(m => m.data.type === 'resized')")

        # Keyboard only: into the results, one to the right, Enter.
        frame.locator("#picker-q").focus()
        page.keyboard.press("ArrowDown")
        expect(frame.locator("button.pick").first).to_be_focused()
        page.keyboard.press("ArrowRight")
        expect(frame.locator("button.pick").nth(1)).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#chosen")).to_have_text(site.uris["image"])
        picked = [m for m in page.evaluate("() => window.__messages")
                  if m["data"]["type"] == "resource-picked"]
        assert len(picked) == 1 and picked[0]["origin"] == site.base
        assert picked[0]["data"]["uri"] == site.uris["image"]
        assert picked[0]["data"]["name"] == "logo.png"
        doc_shot(page, "picker-embedded.png", tmp_path)

        page.keyboard.press("Escape")
        page.wait_for_function(
            "() => window.__messages.some(m => m.data.type === 'cancelled')")
        # Never a cookie: the token in the frame's URL is the whole credential.
        assert ctx.cookies() == []
    finally:
        ctx.close()


def test_picker_page_headers_and_scope(site: Site, apps: tuple[EmbeddingApp, EmbeddingApp]
                                       ) -> None:
    allowed, refused = apps
    url, error = allowed.mint({"slot": "archive", "accept": "image/*"})
    assert not error
    r = httpx.get(url)
    assert r.status_code == 200
    assert f"frame-ancestors {allowed.origin}" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers and "set-cookie" not in r.headers
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "logo.png" in r.text and "stray.png" not in r.text      # the slot's scope
    # The refused origin cannot mint; a tampered token is a 401 page nobody may frame.
    _, error = refused.mint({})
    assert refused.minted[-1]["status"] == 403 and "may not embed" in error
    bad = httpx.get(url[:-3] + "xyz")
    assert bad.status_code == 401 and "frame-ancestors 'none'" in \
        bad.headers["content-security-policy"]
    # Another workspace's key cannot mint for this one; a bad origin is a 400.
    for key, body, status in ((site.server.keys["other"], {"origin": allowed.origin}, 404),
                              (site.server.keys["read"], {"origin": "*"}, 400),
                              (site.server.keys["read"], {"origin": allowed.origin,
                                                          "slot": "nope"}, 400),
                              ("rk_nope_nope", {"origin": allowed.origin}, 401)):
        r = httpx.post(f"{site.base}/v1/{WS}/picker/sessions", json=body,
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == status, (body, r.text)
    # Only an admin key may read or change the allow-list.
    r = httpx.get(f"{site.base}/v1/{WS}/picker/origins",
                  headers={"Authorization": f"Bearer {site.server.keys['read']}"})
    assert r.status_code == 403


def test_origin_not_allowed_is_refused(site: Site, apps: tuple[EmbeddingApp, EmbeddingApp],
                                       browser: Browser, tmp_path: Path  # noqa: F811
                                       ) -> None:
    allowed, refused = apps
    ctx, page = new_page(browser, 900, 700)
    try:
        # Its backend is refused a session: no frame at all.
        page.goto(f"{refused.origin}/")
        expect(page.locator("#mint-error")).to_contain_text("may not embed")
        assert page.locator("iframe").count() == 0
        # A token minted for the allowed origin does not frame on this one.
        url, _ = allowed.mint({"accept": "image/*"})
        token = parse_qs(urlsplit(url).query)["token"][0]
        refusals: list[str] = []
        page.on("console", lambda m: refusals.append(m.text)
                if "frame-ancestors" in m.text else None)
        page.goto(f"{refused.origin}/reuse?token={token}")
        page.wait_for_function("() => window.__loaded")
        picker_frames = [f for f in page.frames if f != page.main_frame]
        assert len(picker_frames) == 1
        assert not picker_frames[0].url.startswith(site.base)    # Chromium's error page
        assert page.frame_locator("#picker").locator("button.pick").count() == 0
        assert page.evaluate("() => window.__messages") == []
        assert refusals, "Chromium reported no frame-ancestors refusal"
        page.screenshot(path=str(tmp_path / "picker-refused.png"))
    finally:
        ctx.close()


def test_removing_the_origin_ends_its_sessions(site: Site,
                                               apps: tuple[EmbeddingApp, EmbeddingApp]) -> None:
    allowed, _ = apps
    url, _ = allowed.mint({})
    assert httpx.get(url).status_code == 200
    with site.server.client("admin") as c:
        c.put(f"/v1/{WS}/picker/origins", json={"origins": []}).raise_for_status()
        try:
            assert httpx.get(url).status_code == 401
        finally:
            c.put(f"/v1/{WS}/picker/origins",
                  json={"origins": [allowed.origin]}).raise_for_status()
    assert httpx.get(url).status_code == 200


def test_picker_routes_are_documented_and_the_cli_sets_origins(site: Site, tmp_path: Path
                                                               ) -> None:
    from search_api.picker_routes import picker_routes
    from server import base_env, cli
    doc = httpx.get(f"{site.base}/openapi.json").json()
    for route in picker_routes:
        for method in route.methods - {"HEAD"}:
            assert method.lower() in doc["paths"][route.path], (method, route.path)
    env = {**base_env(tmp_path / "home"), "RESOURCES_WORKSPACE": "ws-cli"}
    out = cli("picker", "origins", "add", "HTTPS://App.Example.com:443/",
              "http://127.0.0.1:8081", "--format", "json", env=env)
    assert json.loads(out.stdout)["data"]["origins"] == ["http://127.0.0.1:8081",
                                                         "https://app.example.com"]
    out = cli("picker", "origins", "remove", "http://127.0.0.1:8081", "--format", "json",
              env=env)
    assert json.loads(out.stdout)["data"]["origins"] == ["https://app.example.com"]
    bad = cli("picker", "origins", "add", "https://*.example.com", env=env, check=False)
    assert bad.returncode == 1 and b"wildcard" in bad.stderr
    shown = cli("picker", "origins", "show", "--format", "json", env=env)
    assert json.loads(shown.stdout)["data"]["origins"] == ["https://app.example.com"]


def test_upload_into_the_slot_from_the_picker(site: Site, browser: Browser,  # noqa: F811
                                              tmp_path: Path) -> None:
    writer = EmbeddingApp(site, site.server.keys["write"])
    reader = EmbeddingApp(site, site.server.keys["read"])
    ctx, page = new_page(browser, 900, 700)
    try:
        with site.server.client("admin") as c:
            origins = c.get(f"/v1/{WS}/picker/origins").json()["data"]["origins"]
            c.put(f"/v1/{WS}/picker/origins",
                  json={"origins": [*origins, writer.origin, reader.origin]}).raise_for_status()
        # A read key cannot mint an uploading session; without write there is no form.
        reader.mint({"slot": "archive", "write": "1"})
        assert reader.minted[-1]["status"] == 403
        page.goto(f"{writer.origin}/?slot=archive&accept=image/*")
        frame = page.frame_locator("#picker")
        expect(frame.locator("#total")).to_have_text("1")
        assert frame.locator("#picker-upload").count() == 0
        page.goto(f"{writer.origin}/?slot=archive&accept=image/*&write=1")
        expect(frame.locator("#picker-upload")).to_be_visible()
        # A type the session does not accept is refused and nothing is kept.
        frame.locator("#picker-file").set_input_files(
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"plain words"})
        frame.locator("#picker-upload button").click()
        expect(frame.locator("#picked-status")).to_contain_text("accepts only image/*")
        frame.locator("#picker-file").set_input_files(
            {"name": "fresh.png", "mimeType": "image/png",
             "buffer": (FIXTURES / "image.png").read_bytes()})
        frame.locator("#picker-upload button").click()
        page.wait_for_function("() => window.__messages.some(m => m.data.uploaded)")
        msg = [m for m in page.evaluate("() => window.__messages") if m["data"].get("uploaded")][0]
        assert msg["origin"] == site.base and msg["data"]["name"] == "fresh.png"
        expect(page.locator("#chosen")).to_have_text(msg["data"]["uri"])
        with site.server.client("read") as c:
            rec = c.get(f"/v1/{WS}/resources/by-uri", params={"uri": msg["data"]["uri"]}).json()
            assert rec["data"]["slot"] == "archive" and rec["data"]["content-type"] == "image/png"
            assert c.get(f"/v1/{WS}/resources/search", params={"q": "notes.txt", "slot": "archive"}
                         ).json()["meta"]["total"] == 0
        page.screenshot(path=str(tmp_path / "picker-upload.png"))
    finally:
        ctx.close()
        writer.close()
        reader.close()

"""Signed links on a real server: no key needed, tamper and expiry give 403, ttl bounds.

Expiry is tested by moving the server's clock (RESOURCES_CLOCK_FILE), never by sleeping.
"""
from __future__ import annotations

import hashlib
import string
from urllib.parse import urlsplit

import httpx
import pytest

from server import error_body, ok_body, start_server, stop_server, upload
from storage.clock import parse_rfc3339

WS = "/v1/ws-acme"
B64 = string.ascii_letters + string.digits + "-_"
BODY = b"signed content \xe2\x9c\x93 " * 50


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """A server of this module's own: moving its clock days ahead must not expire (and
    let the retention sweep remove) other modules' ephemeral resources."""
    server = start_server(tmp_path_factory.mktemp("signed-server"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def c(api_server):
    with api_server.client("admin") as client:
        yield client


@pytest.fixture
def anon(api_server):
    with httpx.Client(timeout=30) as client:       # no Authorization header at all
        yield client


@pytest.fixture
def clock(api_server):
    """The server's clock; put back where it was after the test."""
    saved = api_server.now()
    yield api_server
    api_server.set_clock(saved)


@pytest.fixture(scope="module")
def rec(c):
    return ok_body(upload(c, BODY, {"filename": "signed.txt"}), 201)["data"]


def signed(c, rec, ttl=None) -> dict:
    params = {"uri": rec["uri"]}
    if ttl is not None:
        params["ttl"] = str(ttl)
    return ok_body(c.get(f"{WS}/resources/url", params=params))["data"]


def test_signed_url_works_without_a_key(api_server, c, anon, rec):
    data = signed(c, rec)
    assert data["url"].startswith(f"{api_server.base}/signed/")
    r = anon.get(data["url"])
    assert r.status_code == 200 and r.content == BODY
    assert r.headers["etag"].strip('"') == hashlib.sha256(BODY).hexdigest()
    assert r.headers["content-type"].startswith("text/plain")
    r = anon.get(data["url"], headers={"Range": "bytes=0-5"})
    assert r.status_code == 206 and r.content == BODY[:6]
    r = anon.get(data["url"], headers={"If-None-Match": f'"{rec["sha256"]}"'})
    assert r.status_code == 304


def test_default_ttl_is_an_hour(api_server, c, rec):
    data = signed(c, rec)
    assert abs(parse_rfc3339(data["expires-at"]) - (api_server.now() + 3600)) <= 1


def test_every_single_character_change_is_403(c, anon, rec):
    url = signed(c, rec)["url"]
    prefix, token = url.rsplit("/", 1)
    assert anon.get(url).status_code == 200
    for i, ch in enumerate(token):
        alternatives = [x for x in (B64 if ch in B64 else "A") if x != ch]
        # the next letter of the alphabet, and one that differs in the low bits only
        for repl in {alternatives[(B64.find(ch) + 1) % len(alternatives)],
                     B64[B64.find(ch) ^ 1] if ch in B64 else "B"} - {ch}:
            bad = f"{prefix}/{token[:i]}{repl}{token[i + 1:]}"
            r = anon.get(bad)
            assert r.status_code == 403, (i, ch, repl, r.status_code)
            error_body(r, 403, "bad_signature")


@pytest.mark.parametrize("token", ["x", "x.y", "..x", "e30.", "AAAA.AAAA", "%00", "a" * 500])
def test_garbage_tokens_are_403(api_server, anon, token):
    error_body(anon.get(f"{api_server.base}/signed/{token}"), 403, "bad_signature")


def test_dropping_or_adding_characters_is_403(c, anon, rec):
    url = signed(c, rec)["url"]
    prefix, token = url.rsplit("/", 1)
    body, mac = token.split(".")
    for bad in (token[:-1], token + "A", body + mac, token + ".x", f"{mac}.{body}",
                f"{body}.", f".{mac}", f"{body}=.{mac}", f"{body}.{mac}=="):
        error_body(anon.get(f"{prefix}/{bad}"), 403, "bad_signature")


def test_expired_link_is_403(clock, c, anon, rec):
    data = signed(c, rec, ttl=60)
    expires = parse_rfc3339(data["expires-at"])
    assert abs(expires - (clock.now() + 60)) <= 1
    assert anon.get(data["url"]).status_code == 200
    clock.set_clock(expires - 1)
    assert anon.get(data["url"]).status_code == 200
    clock.set_clock(expires)
    r = anon.get(data["url"])
    err = error_body(r, 403, "bad_signature")
    assert "expired" in err["message"]
    clock.advance(86_400 * 2)
    error_body(anon.get(data["url"]), 403, "bad_signature")


def test_longest_ttl_link_expires_after_a_day(clock, c, anon, rec):
    data = signed(c, rec, ttl=86_400)
    clock.advance(86_399)
    assert anon.get(data["url"]).status_code == 200
    clock.advance(2)
    error_body(anon.get(data["url"]), 403, "bad_signature")


@pytest.mark.parametrize("ttl", [59, 86_401, 0, -1, "abc", "1.5", "1e3"])
def test_ttl_out_of_bounds_is_400(c, rec, ttl):
    r = c.get(f"{WS}/resources/url", params={"uri": rec["uri"], "ttl": str(ttl)})
    err = error_body(r, 400, "invalid_spec")
    assert "ttl" in err["message"]


@pytest.mark.parametrize("ttl", [60, 86_400])
def test_ttl_bounds_are_inclusive(api_server, c, rec, ttl):
    data = signed(c, rec, ttl)
    assert abs(parse_rfc3339(data["expires-at"]) - (api_server.now() + ttl)) <= 1


def test_link_to_a_deleted_resource_is_gone(c, anon):
    doomed = ok_body(upload(c, b"short-lived\n", {"filename": "doomed.txt"}), 201)["data"]
    url = signed(c, doomed)["url"]
    assert anon.get(url).status_code == 200
    ok_body(c.delete(f"{WS}/resources/by-uri", params={"uri": doomed["uri"]}))
    error_body(anon.get(url), 404, "not_found")


def test_signed_link_follows_a_slot_rewrite(c, anon):
    ok_body(c.put(f"{WS}/slots/signed-slot", json={"root": "signed/root"}))
    spec = {"slot": "signed-slot", "filename": "s.txt"}
    first = ok_body(upload(c, b"one\n", spec), 201)["data"]
    url = signed(c, first)["url"]
    ok_body(upload(c, b"two\n", spec), 200)
    r = anon.get(url)
    assert r.status_code == 200 and r.content == b"two\n"


def test_signed_path_is_on_the_public_url(api_server, c, rec):
    parts = urlsplit(signed(c, rec)["url"])
    assert f"{parts.scheme}://{parts.netloc}" == api_server.base

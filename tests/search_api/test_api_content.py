"""GET /v1/{ws}/resources/content on a real server: bytes, headers, Range, ETag, 304."""
from __future__ import annotations

import hashlib
import random

import pytest

from server import FIXTURES, error_body, ok_body, upload  # noqa: F401

WS = "/v1/ws-acme"


@pytest.fixture(scope="module")
def c(api_server):
    with api_server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def stored(c):
    """name -> (record, bytes) for a few real fixture files, an empty one and a 3 MiB one."""
    out = {}
    for name in ("binary.bin", "image.png", "long.txt", "unicode.txt", "report-multipage.pdf"):
        body = (FIXTURES / name).read_bytes()
        out[name] = (ok_body(upload(c, body, {"filename": name}), 201)["data"], body)
    out["empty"] = (ok_body(upload(c, b"", {"filename": "empty.txt"}), 201)["data"], b"")
    big = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    out["big"] = (ok_body(upload(c, big, {"filename": "big.bin"}), 201)["data"], big)
    return out


def get(c, rec, **headers):
    return c.get(f"{WS}/resources/content", params={"uri": rec["uri"]}, headers=headers)


@pytest.mark.parametrize("name, ctype", [
    ("binary.bin", "application/octet-stream"), ("image.png", "image/png"),
    ("long.txt", "text/plain"), ("unicode.txt", "text/plain"),
    ("report-multipage.pdf", "application/pdf"), ("big", "application/octet-stream"),
])
def test_full_content_and_headers(c, stored, name, ctype):
    rec, body = stored[name]
    r = get(c, rec)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"].split(";")[0] == ctype == rec["content-type"]
    assert int(r.headers["content-length"]) == len(body)
    assert r.headers["etag"].strip('"') == hashlib.sha256(body).hexdigest() == rec["sha256"]
    assert r.headers["accept-ranges"] == "bytes"
    assert "content-range" not in r.headers


def test_empty_content(c, stored):
    rec, _ = stored["empty"]
    r = get(c, rec)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "0"
    assert r.headers["etag"].strip('"') == hashlib.sha256(b"").hexdigest()
    r = get(c, rec, Range="bytes=0-0")
    error_body(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize("name", ["binary.bin", "long.txt", "big"])
def test_ranges_return_exact_bytes(c, stored, name):
    rec, body = stored[name]
    n = len(body)
    rng = random.Random(n)
    cases = [(0, 0), (0, 9), (n - 1, n - 1), (10, n - 1), (0, n - 1)]
    cases += [tuple(sorted(rng.sample(range(n), 2))) for _ in range(5)]
    for first, last in cases:
        r = get(c, rec, Range=f"bytes={first}-{last}")
        assert r.status_code == 206, (first, last, r.text[:200])
        assert r.content == body[first:last + 1]
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}"
        assert int(r.headers["content-length"]) == last - first + 1
        assert r.headers["etag"].strip('"') == rec["sha256"]


def test_open_ended_suffix_and_clamped_ranges(c, stored):
    rec, body = stored["binary.bin"]
    n = len(body)
    r = get(c, rec, Range="bytes=4000-")
    assert r.status_code == 206 and r.content == body[4000:]
    assert r.headers["content-range"] == f"bytes 4000-{n - 1}/{n}"
    r = get(c, rec, Range="bytes=-100")                      # suffix: the last 100 bytes
    assert r.status_code == 206 and r.content == body[-100:]
    assert r.headers["content-range"] == f"bytes {n - 100}-{n - 1}/{n}"
    assert r.headers["content-length"] == "100"
    r = get(c, rec, Range=f"bytes=-{n * 2}")                 # suffix longer than the file
    assert r.status_code == 206 and r.content == body
    assert r.headers["content-range"] == f"bytes 0-{n - 1}/{n}"
    r = get(c, rec, Range=f"bytes=100-{n * 10}")             # last past the end: clamped
    assert r.status_code == 206 and r.content == body[100:]
    assert r.headers["content-range"] == f"bytes 100-{n - 1}/{n}"


@pytest.mark.parametrize("header", ["bytes=4096-", "bytes=5000-6000", "bytes=4096-4096",
                                    "bytes=-0"])
def test_unsatisfiable_range_is_416(c, stored, header):
    rec, body = stored["binary.bin"]
    r = get(c, rec, Range=header)
    error_body(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{len(body)}"


@pytest.mark.parametrize("header", ["bytes=5-2", "items=0-5", "bytes=0-1,5-6", "bytes=x-y",
                                    "bytes=-", "garbage"])
def test_ranges_we_do_not_do_send_everything(c, stored, header):
    rec, body = stored["binary.bin"]
    r = get(c, rec, Range=header)
    assert r.status_code == 200 and r.content == body


def test_if_none_match_gives_304(c, stored):
    rec, body = stored["image.png"]
    etag = get(c, rec).headers["etag"]
    assert etag.strip('"') == rec["sha256"]
    for inm in (etag, rec["sha256"], f'W/{etag}', f'"nope", {etag}', "*"):
        r = get(c, rec, **{"If-None-Match": inm})
        assert r.status_code == 304, inm
        assert r.content == b""
        assert r.headers["etag"] == etag
    r = get(c, rec, **{"If-None-Match": '"0000"'})
    assert r.status_code == 200 and r.content == body


def test_if_range(c, stored):
    rec, body = stored["binary.bin"]
    etag = f'"{rec["sha256"]}"'
    r = get(c, rec, Range="bytes=0-9", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == body[:10]
    r = get(c, rec, Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == body


def test_content_streams_a_slot_rewrite_with_new_etag(c):
    ok_body(c.put(f"{WS}/slots/content-slot", json={"root": "content/root"}))
    spec = {"slot": "content-slot", "filename": "v.txt"}
    first = ok_body(upload(c, b"version one\n", spec), 201)["data"]
    second = ok_body(upload(c, b"version two!\n", spec), 200)["data"]
    assert second["uri"] == first["uri"] and second["version"] == 2
    r = c.get(f"{WS}/resources/content", params={"uri": first["uri"]},
              headers={"If-None-Match": f'"{first["sha256"]}"'})
    assert r.status_code == 200 and r.content == b"version two!\n"
    assert r.headers["etag"].strip('"') == hashlib.sha256(b"version two!\n").hexdigest()


def test_content_disposition_and_nosniff(c):
    rec = ok_body(upload(c, b"<script>alert(1)</script>",
                         {"filename": "ünï code \"q\".html"}), 201)["data"]
    r = c.get(f"{WS}/resources/content", params={"uri": rec["uri"]})
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    # HTML is not an inert type: it is served as a download (issue 14, item 3).
    assert r.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    assert '"' not in r.headers["content-disposition"]

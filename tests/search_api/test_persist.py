"""CONTRACT "Record (JSON)" and "Where a blob lands": every fixture persists to a full
record, its blob sits at the record's path under the data home, and reads back intact."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

import pytest

from conftest import FIXTURES, files_under
from storage.errors import InvalidSpec, NotFound

WS = "ws-acme"
RECORD_FIELDS = [
    "uri", "id", "workspace", "type", "tier", "display-name", "filename", "content-type",
    "size", "sha256", "storage-backend", "storage-root", "path-under-root", "path", "slot",
    "flow", "step", "workflow-id", "tags", "source-label", "created-at", "updated-at",
    "expires-at", "version", "content-indexed", "content-truncated", "webUrl",
]
NOT_FIXTURES = {"README.md", "make_fixtures.py", "slow_pdf.py"}
FIXTURE_FILES = sorted(p.name for p in FIXTURES.iterdir()
                       if p.is_file() and p.name not in NOT_FIXTURES)
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def record_of(service, res) -> dict:
    return res.to_json(service.settings.public_url)


def read_back(service, uri: str) -> bytes:
    return b"".join(service.read(WS, uri)[3])


def test_fixture_set_is_complete():
    assert len(FIXTURE_FILES) == 13
    assert "report-multipage.pdf" in FIXTURE_FILES and "image.png" in FIXTURE_FILES


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_each_fixture_persists_to_a_full_record_at_its_contract_path(service, home, fixtures_dir,
                                                                     name):
    data = (fixtures_dir / name).read_bytes()
    with open(fixtures_dir / name, "rb") as fh:
        result = service.persist(WS, {"filename": name, "flow": "ingest", "step": "load",
                                      "workflow-id": "run-1", "tags": ["fixture"]}, fh)
    assert result.created and not result.replayed
    rec = record_of(service, result.resource)

    # every CONTRACT field is present, and the record is plain JSON
    assert [f for f in RECORD_FIELDS if f not in rec] == []
    assert json.loads(json.dumps(rec)) == rec

    # identity
    assert ULID.match(rec["id"])
    assert rec["uri"] == f"res://v1/ws/{WS}/file/{rec['id']}"
    assert rec["workspace"] == WS
    assert rec["type"] == "file"
    assert rec["tier"] == "retained"
    assert rec["filename"] == name
    assert rec["display-name"] == name
    assert rec["version"] == 1
    assert rec["tags"] == ["fixture"]
    assert (rec["flow"], rec["step"], rec["workflow-id"]) == ("ingest", "load", "run-1")
    assert rec["source-label"] == "ingest/load"
    assert rec["slot"] is None
    assert isinstance(rec["content-indexed"], bool)
    assert isinstance(rec["content-truncated"], bool)
    assert rec["content-type"] and "/" in rec["content-type"]

    # the bytes
    assert rec["size"] == len(data)
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()

    # times: RFC 3339 UTC; retained lives 365 days
    for key in ("created-at", "updated-at", "expires-at"):
        assert RFC3339_UTC.match(rec[key]), (key, rec[key])
    created = datetime.fromisoformat(rec["created-at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(rec["expires-at"].replace("Z", "+00:00"))
    assert rec["updated-at"] == rec["created-at"]
    assert abs((expires - created).total_seconds() - 365 * 86400) < 1

    # where the blob lands: the unslotted CONTRACT layout, directly under the data home
    assert rec["storage-backend"] == "platform"
    assert rec["storage-root"] is None and rec["path-under-root"] is None
    assert re.fullmatch(rf"workspaces/{WS}/persist/ingest/load/[0-9a-f]{{32}}/{re.escape(name)}",
                        rec["path"]), rec["path"]
    blob = home / rec["path"]
    assert blob.is_file()
    assert blob.read_bytes() == data
    assert f"{blob.relative_to(home)}" in files_under(home)

    # webUrl links to the resource's page in the service's own web view
    assert rec["webUrl"].startswith(service.settings.public_url + "/")
    assert rec["id"] in rec["webUrl"]

    # reading back gives identical bytes, and get returns the same record
    assert read_back(service, rec["uri"]) == data
    assert record_of(service, service.get(WS, rec["uri"])) == rec
    assert not any((home / "tmp").iterdir())


def test_every_fixture_together_each_read_back_intact(service, fixtures_dir):
    uris = {}
    for name in FIXTURE_FILES:
        with open(fixtures_dir / name, "rb") as fh:
            uris[name] = service.persist(WS, {"filename": name}, fh).resource.uri
    assert len(set(uris.values())) == len(FIXTURE_FILES)
    for name, uri in uris.items():
        assert read_back(service, uri) == (fixtures_dir / name).read_bytes()
    assert service.catalog.resources.count() == len(FIXTURE_FILES)


def test_content_types_come_from_the_bytes(service, fixtures_dir):
    def ctype(name):
        with open(fixtures_dir / name, "rb") as fh:
            return service.persist(WS, {"filename": name}, fh).resource.content_type
    assert ctype("image.png") == "image/png"
    assert ctype("report-multipage.pdf") == "application/pdf"
    assert ctype("archive.zip") == "application/zip"
    assert ctype("document.json") == "application/json"


def test_empty_body_persists(service, home):
    res = service.persist(WS, {"filename": "empty.txt"}, b"").resource
    assert res.size == 0
    assert res.sha256 == hashlib.sha256(b"").hexdigest()
    assert (home / res.path).read_bytes() == b""
    assert read_back(service, res.uri) == b""


def test_unslotted_defaults_flow_and_step_to_underscore_and_omit_missing_path(service, home):
    res = service.persist(WS, {"filename": "a.txt"}, b"hello").resource
    assert re.fullmatch(rf"workspaces/{WS}/persist/_/_/[0-9a-f]{{32}}/a\.txt", res.path)
    assert res.source_label == "upload"
    res = service.persist(WS, {"path": "out/2026", "filename": "a.txt", "flow": "f"}, b"x").resource
    assert re.fullmatch(rf"workspaces/{WS}/persist/f/_/[0-9a-f]{{32}}/out/2026/a\.txt", res.path)
    assert (home / res.path).read_bytes() == b"x"


def test_explicit_display_name_and_content_type_are_kept(service):
    res = service.persist(WS, {"filename": "r.bin", "display-name": "Quarterly report",
                               "content-type": "application/x-custom"}, b"\x00\x01").resource
    assert res.display_name == "Quarterly report"
    assert res.content_type == "application/x-custom"


def test_ephemeral_tier_defaults_to_24_hours(service):
    res = service.persist(WS, {"filename": "t.txt", "tier": "ephemeral"}, b"tmp").resource
    assert res.tier == "ephemeral"
    assert abs((res.expires_at - res.created_at) - 86400) < 1


def test_ttl_seconds_shortens_retention(service):
    res = service.persist(WS, {"filename": "t.txt", "ttl-seconds": 600}, b"tmp").resource
    assert abs((res.expires_at - res.created_at) - 600) < 1


# -- kv persists: a structured `result` ---------------------------------------------------
def test_kv_persist_with_valid_json_is_a_result(service, home):
    body = json.dumps({"total": 42, "items": ["a", "b"]}).encode()
    res = service.persist(WS, {"type": "kv", "filename": "summary.json"}, body).resource
    rec = record_of(service, res)
    assert rec["type"] == "result"
    assert rec["content-type"] == "application/json"
    assert rec["uri"] == f"res://v1/ws/{WS}/result/{rec['id']}"
    assert read_back(service, rec["uri"]) == body
    assert (home / rec["path"]).read_bytes() == body


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"a": 1} trailing'])
def test_kv_persist_with_invalid_json_is_rejected_and_nothing_kept(service, home, body):
    before = files_under(home)
    with pytest.raises(InvalidSpec) as err:
        service.persist(WS, {"type": "kv", "filename": "bad.json"}, body)
    assert "JSON" in err.value.message
    assert err.value.status == 400
    assert files_under(home) == before
    assert service.catalog.resources.count() == 0
    assert not any((home / "tmp").iterdir())


def test_invalid_spec_fields_are_rejected(service, home):
    before = files_under(home)
    for spec, words in [({"type": "table"}, "spec type"), ({"tier": "forever"}, "tier"),
                        ({"colour": "red"}, "unknown field"), ({"ttl-seconds": -1}, "ttl-seconds"),
                        ("{oops", "not valid JSON")]:
        with pytest.raises(InvalidSpec) as err:
            service.persist(WS, spec, b"x")
        assert words in err.value.message
    assert files_under(home) == before
    assert service.catalog.resources.count() == 0


def test_unicode_and_spaced_filenames_work(service, home):
    for name in ("résumé final.pdf", "報告書.txt", "emoji-😀.md"):
        res = service.persist(WS, {"filename": name, "path": "übersicht/2026"}, name.encode()).resource
        assert res.filename == name
        assert res.path.endswith(f"/übersicht/2026/{name}")
        assert (home / res.path).read_bytes() == name.encode()


def test_a_resource_is_invisible_from_another_workspace(service):
    res = service.persist(WS, {"filename": "private.txt"}, b"mine").resource
    with pytest.raises(NotFound):
        service.get("ws-other", res.uri)
    with pytest.raises(NotFound):
        service.read("ws-other", res.uri)
    forged = res.uri.replace(f"/ws/{WS}/", "/ws/ws-other/")
    with pytest.raises(NotFound):
        service.get("ws-other", forged)
    with pytest.raises(NotFound):
        service.get(WS, res.uri.replace("/file/", "/result/"))


def test_byte_ranges_read_back_exactly(service, fixtures_dir):
    data = (fixtures_dir / "long.txt").read_bytes()
    res = service.persist(WS, {"filename": "long.txt"}, data).resource
    _, start, end, chunks = service.read(WS, res.uri, (100, 299))
    assert (start, end) == (100, 299) and b"".join(chunks) == data[100:300]
    _, start, end, chunks = service.read(WS, res.uri, (None, 10))
    assert b"".join(chunks) == data[-10:]
    _, start, end, chunks = service.read(WS, res.uri, (len(data) - 5, None))
    assert b"".join(chunks) == data[-5:]

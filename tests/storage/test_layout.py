"""CONTRACT "Where a blob lands": templates, relative-path rules, and rejection that
writes nothing (no file under the data home, no record)."""
from __future__ import annotations

import re

import pytest

from conftest import files_under
from storage.errors import BadRequest, InvalidPath, TemplateError

WS = "ws-acme"


@pytest.fixture
def archive(service):
    service.bind_slot(WS, "archive", "reports/acme")
    return "archive"


def assert_nothing_written(service, home, before: set[str]) -> None:
    assert files_under(home) == before
    assert service.catalog.resources.count() == 0
    assert not any((home / "tmp").iterdir())


# (spec fields, exception class, words the message must contain)
REJECTED = [
    pytest.param({"path": "../x"}, InvalidPath, ["path", "'..'"], id="dotdot"),
    pytest.param({"path": "a/../../b"}, InvalidPath, ["path", "'..'"], id="inner-dotdot"),
    pytest.param({"path": "/abs"}, InvalidPath, ["path", "relative", "'/'"], id="absolute"),
    pytest.param({"path": "a//b"}, InvalidPath, ["path", "empty segment"], id="empty-segment"),
    pytest.param({"path": "a\\b"}, InvalidPath, ["path", "backslash"], id="backslash"),
    pytest.param({"path": "."}, InvalidPath, ["path", "'.'"], id="dot"),
    pytest.param({"path": "a\x00b"}, InvalidPath, ["path", "NUL"], id="nul"),
    pytest.param({"path": "a\x07b"}, InvalidPath, ["path", "control character"], id="control"),
    pytest.param({"path": "a\nb"}, InvalidPath, ["path", "control character"], id="newline"),
    pytest.param({"path": "a/"}, InvalidPath, ["path", "empty segment"], id="trailing-slash"),
    pytest.param({"filename": ".."}, InvalidPath, ["filename", "'..'"], id="filename-dotdot"),
    pytest.param({"filename": "a/../b"}, InvalidPath, ["filename", "'..'"], id="filename-inner"),
    pytest.param({"filename": "/etc/passwd"}, InvalidPath, ["filename", "relative"],
                 id="filename-absolute"),
    pytest.param({"filename": "a\x00.txt"}, InvalidPath, ["filename", "NUL"], id="filename-nul"),
    pytest.param({"path": "exports/{{input.year}}"}, TemplateError,
                 ["path", "input.year", "missing"], id="missing-variable"),
    pytest.param({"path": "exports/{{input.year}}", "params": {"input": {"month": 3}}},
                 TemplateError, ["input.year", "missing"], id="missing-variable-other-given"),
    pytest.param({"filename": "{{data.name}}.pdf"}, TemplateError,
                 ["filename", "data.name", "missing"], id="missing-filename-variable"),
    pytest.param({"path": "runs/{{flow-slug}}"}, TemplateError, ["flow-slug", "no value"],
                 id="missing-runtime-variable"),
    pytest.param({"path": "{{input.year}}/x", "params": {"input": {"year": ".."}}}, InvalidPath,
                 ["path", "'..'"], id="rendered-dotdot"),
    pytest.param({"path": "{{input.dir}}", "params": {"input": {"dir": "/etc"}}}, InvalidPath,
                 ["path", "relative"], id="rendered-absolute"),
    pytest.param({"path": "{{input.year}}", "params": {"input": {"year": None}}}, TemplateError,
                 ["input.year"], id="null-variable"),
    pytest.param({"path": "{{secret.x}}"}, TemplateError, ["unknown template variable"],
                 id="unknown-group"),
]


@pytest.mark.parametrize("spec,exc_class,words", REJECTED)
def test_bad_path_is_rejected_with_a_clear_message_and_nothing_written(service, home, spec,
                                                                       exc_class, words):
    spec = {"filename": "report.pdf", **spec}
    before = files_under(home)
    with pytest.raises(exc_class) as err:
        service.persist(WS, spec, b"%PDF-1.4 some bytes")
    assert isinstance(err.value, BadRequest) and err.value.status == 400
    for word in words:
        assert word in err.value.message, (word, err.value.message)
    assert_nothing_written(service, home, before)


@pytest.mark.parametrize("spec,exc_class,words", REJECTED)
def test_bad_path_under_a_slot_is_rejected_too(service, home, archive, spec, exc_class, words):
    spec = {"filename": "report.pdf", "slot": archive, **spec}
    before = files_under(home)
    with pytest.raises(exc_class) as err:
        service.persist(WS, spec, b"bytes")
    for word in words:
        assert word in err.value.message
    assert_nothing_written(service, home, before)


@pytest.mark.parametrize("root,words", [
    ("reports/../acme", ["storage root", "'..'"]),
    ("../reports", ["storage root", "'..'"]),
    ("/reports", ["storage root", "relative"]),
    ("reports//acme", ["storage root", "empty segment"]),
    ("reports\\acme", ["storage root", "backslash"]),
    ("reports/\x01", ["storage root", "control character"]),
])
def test_bad_slot_root_is_rejected_and_nothing_written(service, home, root, words):
    before = files_under(home)
    with pytest.raises(InvalidPath) as err:
        service.bind_slot(WS, "archive", root)
    for word in words:
        assert word in err.value.message
    assert service.list_slots(WS) == []
    assert_nothing_written(service, home, before)


def test_huge_stream_with_a_bad_path_is_never_read(service, home):
    """Rejection happens before the body: an endless body is not consumed."""
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 65536

    before = files_under(home)
    with pytest.raises(InvalidPath):
        service.persist(WS, {"path": "../escape", "filename": "x"}, endless())
    assert pulled == 0
    assert_nothing_written(service, home, before)


def test_slash_bearing_filename_lands_after_path(service, home, archive):
    res = service.persist(WS, {"slot": archive, "path": "exports", "filename": "2026/report.pdf"},
                          b"old-style").resource
    assert res.path == f"workspaces/{WS}/storage/reports/acme/exports/2026/report.pdf"
    assert res.path_under_root == "exports/2026/report.pdf"
    assert res.filename == "report.pdf"
    assert (home / res.path).read_bytes() == b"old-style"

    res = service.persist(WS, {"path": "exports", "filename": "2026/report.pdf"}, b"u").resource
    assert re.fullmatch(rf"workspaces/{WS}/persist/_/_/[0-9a-f]{{32}}/exports/2026/report\.pdf",
                        res.path)
    assert (home / res.path).read_bytes() == b"u"


def test_slash_bearing_filename_segments_obey_the_rules(service, home):
    before = files_under(home)
    for filename in ("2026//report.pdf", "2026/./report.pdf", "2026\\report.pdf", "2026/"):
        with pytest.raises(InvalidPath) as err:
            service.persist(WS, {"path": "exports", "filename": filename}, b"x")
        assert "filename" in err.value.message
    assert_nothing_written(service, home, before)


def test_templates_render_from_params_and_request(service, home):
    spec = {"path": "{{workspace-id}}/{{flow-slug}}/{{step-id}}/{{input.year}}/{{data.kind}}",
            "filename": "{{query.name}}-{{input.n}}.txt", "flow": "billing", "step": "export",
            "params": {"input": {"year": 2026, "n": 7}, "data": {"kind": "csv"},
                       "query": {"name": "totals"}}}
    res = service.persist(WS, spec, b"t").resource
    assert res.path.endswith(f"/{WS}/billing/export/2026/csv/totals-7.txt")
    assert res.path.startswith(f"workspaces/{WS}/persist/billing/export/")
    assert res.filename == "totals-7.txt"
    assert (home / res.path).read_bytes() == b"t"


def test_nested_param_values_render(service):
    spec = {"path": "{{input.period.year}}", "filename": "a.txt",
            "params": {"input": {"period": {"year": "2025"}}}}
    assert service.persist(WS, spec, b"n").resource.path.endswith("/2025/a.txt")


def test_two_unslotted_persists_with_the_same_path_never_collide(service, home):
    spec = {"path": "exports/2026", "filename": "report.pdf", "flow": "f", "step": "s"}
    a = service.persist(WS, spec, b"first").resource
    b = service.persist(WS, spec, b"second").resource
    assert a.uri != b.uri
    assert a.path != b.path
    assert a.path.endswith("/exports/2026/report.pdf") and b.path.endswith("/exports/2026/report.pdf")
    assert a.version == b.version == 1
    assert (home / a.path).read_bytes() == b"first"
    assert (home / b.path).read_bytes() == b"second"
    assert b"".join(service.read(WS, a.uri)[3]) == b"first"
    assert service.catalog.resources.count() == 2


def test_slot_layout_has_no_hidden_segments(service, home, archive):
    res = service.persist(WS, {"slot": archive, "filename": "top.txt"}, b"top").resource
    assert res.path == f"workspaces/{WS}/storage/reports/acme/top.txt"
    assert res.storage_root == "reports/acme"
    assert res.path_under_root == "top.txt"
    assert res.slot == "archive"
    assert (home / res.path).read_bytes() == b"top"


def test_unbound_slot_is_rejected_and_nothing_written(service, home):
    before = files_under(home)
    with pytest.raises(BadRequest) as err:
        service.persist(WS, {"slot": "nowhere", "filename": "x"}, b"x")
    assert "nowhere" in err.value.message and "not bound" in err.value.message
    assert_nothing_written(service, home, before)


def test_slots_are_per_workspace(service, home, archive):
    with pytest.raises(BadRequest):
        service.persist("ws-other", {"slot": archive, "filename": "x"}, b"x")
    assert service.catalog.resources.count() == 0


@pytest.mark.parametrize("ws", ["../ws", "ws/acme", "", "-lead", "w s"])
def test_bad_workspace_is_rejected(service, home, ws):
    before = files_under(home)
    with pytest.raises(InvalidPath) as err:
        service.persist(ws, {"filename": "x"}, b"x")
    assert "workspace" in err.value.message
    assert_nothing_written(service, home, before)

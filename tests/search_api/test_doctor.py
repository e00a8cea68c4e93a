"""`resources doctor`: each kind of inconsistency, made on purpose, is reported by kind
(exit 1), fixed by `--repair`, and a second run is clean (exit 0). Repairs never destroy
bytes. Doctor also reports usage per workspace, tier and root and extraction failures,
the same numbers GET /v1/{ws}/usage gives."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import tantivy

from conftest import FIXTURES, fresh_index_ids
from search_api import doctor
from server import base_env, cli, ok_body, start_server, stop_server, upload

WS = "ws-acme"


@pytest.fixture
def seeded(svc) -> dict:
    """A small healthy home: name -> Resource."""
    svc.bind_slot(WS, "archive", "reports/acme")
    out = {
        "plain": svc.persist(WS, {"filename": "plain.txt", "flow": "f", "step": "s"},
                             b"plain text content\n" * 50).resource,
        "slotted": svc.persist(WS, {"slot": "archive", "path": "2026", "filename": "q1.txt"},
                               b"quarterly numbers\n" * 10).resource,
        "ephemeral": svc.persist(WS, {"tier": "ephemeral", "filename": "tmp.bin"},
                                 b"\x00\x01" * 100).resource,
        "short": svc.persist(WS, {"filename": "short.txt", "ttl-seconds": 600},
                             b"short lived\n").resource,
        "other": svc.persist("ws-other", {"filename": "theirs.txt"}, b"theirs\n").resource,
    }
    assert doctor.run(svc)["ok"] is True
    return out


def doctor_cli(env: dict, *args: str) -> tuple[int, dict]:
    proc = cli("doctor", *args, "--format", "json", env=env, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)["data"]


def drop_index_document(home: Path, id_: str) -> None:
    index = tantivy.Index.open(str((home / "index").resolve()))
    writer = index.writer(15_000_000, 1)
    writer.delete_documents_by_term("id", id_)
    writer.commit()
    writer.wait_merging_threads()



# -- the corruptions: each returns (kind, subject, check after repair) ----------------------
def missing_blob(svc, home, seeded, clock):
    res = seeded["plain"]
    (home / res.path).unlink()

    def after():
        assert svc.catalog.resources.get(res.id) is None            # unreadable: the record goes
        assert res.id not in fresh_index_ids(home)
    return "missing-blob", res.uri, after


def orphan_blob(svc, home, seeded, clock):
    key = f"workspaces/{WS}/persist/_/_/stray/lost.bin"
    (home / key).parent.mkdir(parents=True)
    (home / key).write_bytes(b"nobody owns me")

    def after():
        assert not (home / key).exists()
        kept = list((home / "quarantine").iterdir())
        assert [p.read_bytes() for p in kept] == [b"nobody owns me"]   # never destroyed
    return "orphan-blob", key, after


def orphan_in_slot(svc, home, seeded, clock):
    key = f"workspaces/{WS}/storage/reports/acme/2026/dropped.csv"
    (home / key).write_bytes(b"city,pop\nOslo,700000\n")

    def after():
        assert (home / key).read_bytes() == b"city,pop\nOslo,700000\n"   # stays in place
        found = svc.catalog.resources.by_location("platform", key)
        assert found is not None
        assert (found.workspace, found.slot, found.storage_root, found.path_under_root) == \
            (WS, "archive", "reports/acme", "2026/dropped.csv")
        assert found.id in fresh_index_ids(home)
        assert not (home / "quarantine").exists()
    return "orphan-blob", key, after


def index_missing(svc, home, seeded, clock):
    res = seeded["slotted"]
    drop_index_document(home, res.id)
    assert res.id not in fresh_index_ids(home)

    def after():
        assert res.id in fresh_index_ids(home)
        assert svc.catalog.resources.get(res.id) is not None
    return "index-missing", res.id, after


def sha256_mismatch(svc, home, seeded, clock):
    res = seeded["plain"]
    path = home / res.path
    data = bytearray(path.read_bytes())
    data[7] ^= 0xFF
    path.write_bytes(bytes(data))

    def after():
        assert svc.catalog.resources.get(res.id) is None and not path.exists()
        kept = list((home / "quarantine").iterdir())
        assert [p.read_bytes() for p in kept] == [bytes(data)]
    return "sha256-mismatch", res.uri, after


def size_mismatch(svc, home, seeded, clock):
    res = seeded["ephemeral"]
    path = home / res.path
    with open(path, "r+b") as fh:
        fh.truncate(50)

    def after():
        assert svc.catalog.resources.get(res.id) is None and not path.exists()
        assert [p.stat().st_size for p in (home / "quarantine").iterdir()] == [50]
    return "size-mismatch", res.uri, after


def temp_leftover(svc, home, seeded, clock):
    part = home / "tmp" / "0123456789abcdef0123456789abcdef.part"
    part.write_bytes(b"half an upload")

    def after():
        assert not part.exists()
    return "temp-leftover", str(part), after


def expired_present(svc, home, seeded, clock):
    res = seeded["short"]
    clock.advance(600)

    def after():
        assert svc.catalog.resources.get(res.id) is None and not (home / res.path).exists()
        assert res.id not in fresh_index_ids(home)
    return "expired-present", res.uri, after


CORRUPTIONS: dict[str, Callable] = {
    "missing-blob": missing_blob, "orphan-blob": orphan_blob, "orphan-in-slot": orphan_in_slot,
    "index-missing": index_missing, "sha256-mismatch": sha256_mismatch,
    "size-mismatch": size_mismatch, "temp-leftover": temp_leftover,
    "expired-present": expired_present,
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_kind_is_reported_then_repaired(name, svc, home, seeded, clock, env):
    kind, subject, after = CORRUPTIONS[name](svc, home, seeded, clock)
    others = [r for n, r in seeded.items() if n != "short" or kind != "expired-present"]

    # the in-process diagnosis agrees with the CLI's
    found = doctor.diagnose(svc)
    assert [(p.kind, p.subject) for p in found] == [(kind, subject)]

    code, report = doctor_cli(env)
    assert code == 1 and report["ok"] is False
    assert report["counts"] == {k: int(k == kind) for k in doctor.KINDS}
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [(kind, subject)]

    # reporting changed nothing: the same problem is still there
    assert [(p.kind, p.subject) for p in doctor.diagnose(svc)] == [(kind, subject)]

    code, repaired = doctor_cli(env, "--repair")
    assert code == 0 and repaired["ok"] is True, repaired
    assert [(p["kind"], p["subject"]) for p in repaired["repaired"]] == [(kind, subject)]
    assert repaired["repaired"][0]["action"]
    assert repaired["not-repaired"] == []
    assert repaired["counts"] == {k: 0 for k in doctor.KINDS}

    code, clean = doctor_cli(env)
    assert code == 0 and clean["ok"] is True and clean["problems"] == []
    after()
    # the healthy resources are untouched (still readable, same bytes)
    touched = subject.rsplit("/", 1)[-1]
    for res in others:
        if res.id == touched or res.uri == subject:
            continue
        svc_ws = res.workspace
        data = b"".join(svc.read(svc_ws, res.uri)[3])
        assert len(data) == res.size


def test_many_kinds_at_once_table_output_and_exit_codes(svc, home, seeded, clock, env, tmp_path):
    expected = {}
    for name in ("missing-blob", "orphan-blob", "orphan-in-slot", "index-missing",
                 "size-mismatch", "temp-leftover", "expired-present"):
        kind, subject, after = CORRUPTIONS[name](svc, home, seeded, clock)
        expected.setdefault(kind, set()).add(subject)
    pdf = svc.persist(WS, {"filename": "broken.pdf"}, (FIXTURES / "broken.pdf").read_bytes())
    assert pdf.resource.extraction.error

    proc = cli("doctor", "--format", "table", env=env, check=False)
    assert proc.returncode == 1
    out = proc.stdout.decode()
    for kind, subjects in expected.items():
        for subject in subjects:
            assert any(line.startswith("problem") and kind in line and subject in line
                       for line in out.splitlines()), (kind, subject, out)
        assert f"{kind}={len(subjects)}" in out
    assert "extraction failures: 1" in out
    assert "problems remain" in out

    code, repaired = doctor_cli(env, "--repair")
    assert code == 0, repaired
    assert {(p["kind"], p["subject"]) for p in repaired["repaired"]} == \
        {(k, s) for k, subjects in expected.items() for s in subjects}

    proc = cli("doctor", "--format", "table", env=env, check=False)
    assert proc.returncode == 0, proc.stdout.decode()
    out = proc.stdout.decode()
    # usage per workspace / tier / root, from the catalog
    usage = svc.usage(None)
    assert f"usage: {usage['count']} resources, {usage['bytes']:,} bytes" in out
    for g in usage["groups"]:
        row = [line.split() for line in out.splitlines()
               if line.split()[:3] == [g["workspace"], g["tier"], g["storage-root"] or "-"]]
        assert row == [[g["workspace"], g["tier"], g["storage-root"] or "-",
                        str(g["count"]), f"{g['bytes']:,}"]], (g, out)
    roots = {(g["workspace"], g["tier"], g["storage-root"]) for g in usage["groups"]}
    assert (WS, "retained", "reports/acme") in roots and ("ws-other", "retained", None) in roots
    assert out.rstrip().endswith("ok")


def test_repair_never_touches_a_healthy_home(svc, home, seeded, env):
    before = sorted(str(p.relative_to(home)) for p in (home / "workspaces").rglob("*"))
    code, report = doctor_cli(env, "--repair")
    assert code == 0 and report["ok"] and report.get("repaired", []) == []
    assert sorted(str(p.relative_to(home)) for p in (home / "workspaces").rglob("*")) == before
    assert not (home / "quarantine").exists()


def test_usage_over_http_matches_doctor(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        with server.client("admin") as c, server.client("other") as other:
            ok_body(c.put("/v1/ws-acme/slots/archive", json={"root": "reports/acme"}))
            for spec, body in [({"filename": "a.txt"}, b"a" * 100),
                               ({"filename": "b.txt", "tier": "ephemeral"}, b"b" * 30),
                               ({"slot": "archive", "filename": "c.txt"}, b"c" * 7),
                               ({"slot": "archive", "path": "x", "filename": "d.txt"}, b"d" * 5),
                               ({"filename": "broken.pdf"}, (FIXTURES / "broken.pdf").read_bytes())]:
                ok_body(upload(c, body, spec), 201)
            ok_body(upload(other, b"o" * 1000, {"filename": "o.txt"}, ws="ws-other"), 201)

            usage = ok_body(c.get("/v1/ws-acme/usage"))["data"]
            code, report = doctor_cli(base_env(server.home, server.clock_file))
            assert code == 0
            whole = report["usage"]
            mine = [g for g in whole["groups"] if g["workspace"] == WS]
            assert usage["groups"] == mine
            assert usage["count"] == sum(g["count"] for g in mine) == 5
            assert usage["bytes"] == sum(g["bytes"] for g in mine) == \
                100 + 30 + 7 + 5 + (FIXTURES / "broken.pdf").stat().st_size
            assert usage["extraction-failures"] == 1
            by_tier = {t["tier"]: (t["count"], t["bytes"]) for t in usage["by-tier"]}
            assert by_tier["ephemeral"] == (1, 30)
            by_root = {r["storage-root"]: (r["count"], r["bytes"]) for r in usage["by-storage-root"]}
            assert by_root["reports/acme"] == (2, 12)
            assert whole["count"] == 6 and whole["extraction-failures"] == 1
            # another workspace's usage is not ours to see
            assert c.get("/v1/ws-other/usage").status_code == 404
            theirs = ok_body(other.get("/v1/ws-other/usage"))["data"]
            assert (theirs["count"], theirs["bytes"], theirs["extraction-failures"]) == (1, 1000, 0)
    finally:
        stop_server(server)


# -- what a crashed process leaves: reported first, then finished by --repair ----------------
def test_crash_after_publish_is_reported_then_rolled_forward(svc, home, seeded, env, tmp_path):
    src = tmp_path / "crashed.txt"
    src.write_bytes(b"acknowledged? no: killed after the rename\n")
    crashed = dict(env, RESOURCES_FAULT="persist.after_publish")
    proc = cli("persist", str(src), "--format", "json", env=crashed, check=False)
    assert proc.returncode < 0                       # SIGKILLed at the fault point
    blobs = [p for p in (home / "workspaces").rglob("crashed.txt")]
    assert len(blobs) == 1
    key = str(blobs[0].relative_to(home))

    code, report = doctor_cli(env)
    assert code == 1
    assert report["counts"] == {k: int(k in ("pending-operation", "orphan-blob"))
                                for k in doctor.KINDS}
    assert [p["subject"] for p in report["problems"] if p["kind"] == "orphan-blob"] == [key]

    code, repaired = doctor_cli(env, "--repair")
    assert code == 0 and repaired["not-repaired"] == [], repaired
    assert not (home / "quarantine").exists()        # the published blob was kept
    res = svc.catalog.resources.by_location("platform", key)
    assert res is not None and (home / key).read_bytes() == src.read_bytes()
    assert b"".join(svc.read(WS, res.uri)[3]) == src.read_bytes()
    assert res.id in fresh_index_ids(home)
    assert doctor_cli(env)[0] == 0


def test_crash_during_delete_is_reported_then_finished(svc, home, seeded, env):
    res = seeded["plain"]
    crashed = dict(env, RESOURCES_FAULT="delete.after_record")
    proc = cli("delete", res.uri, "--format", "json", env=crashed, check=False)
    assert proc.returncode < 0
    assert (home / res.path).exists() and svc.catalog.resources.get(res.id) is None

    code, report = doctor_cli(env)
    assert code == 1
    assert report["counts"] == {k: int(k in ("pending-operation", "orphan-blob"))
                                for k in doctor.KINDS}

    code, repaired = doctor_cli(env, "--repair")
    assert code == 0 and repaired["not-repaired"] == [], repaired
    assert not (home / res.path).exists()            # the delete was finished
    assert not (home / "quarantine").exists()
    assert res.id not in fresh_index_ids(home)
    assert doctor_cli(env)[0] == 0

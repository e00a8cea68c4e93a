"""A run's cleanup removes exactly that run's resources (with `tier`, only that tier):
through the service, the CLI (`resources workflow delete WF --tier T`) and HTTP
(`DELETE /v1/{ws}/workflows/{wf}/resources?tier=`). Blob, record and index entry go
together; other runs, untagged resources and other workspaces are untouched."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import fresh_index_ids
from server import base_env, cli, error_body, ok_body, start_server, stop_server, upload
from storage.errors import InvalidSpec

WS = "ws-acme"


def make_runs(persist) -> dict[str, str]:
    """persist(ws, spec, body) -> uri. Returns name -> uri."""
    layout = {
        "wf1-load-ret": (WS, {"workflow-id": "wf-1", "step": "load"}),
        "wf1-load-eph": (WS, {"workflow-id": "wf-1", "step": "load", "tier": "ephemeral"}),
        "wf1-dump-eph": (WS, {"workflow-id": "wf-1", "step": "dump", "tier": "ephemeral"}),
        "wf1-kv-ret": (WS, {"workflow-id": "wf-1", "step": "emit", "type": "kv"}),
        "wf10-eph": (WS, {"workflow-id": "wf-10", "tier": "ephemeral"}),   # prefix lookalike
        "wf2-eph": (WS, {"workflow-id": "wf-2", "tier": "ephemeral"}),
        "no-run": (WS, {"tier": "ephemeral"}),
        "other-ws-wf1": ("ws-other", {"workflow-id": "wf-1", "tier": "ephemeral"}),
    }
    out = {}
    for name, (ws, spec) in layout.items():
        body = b'{"n": 1}' if spec.get("type") == "kv" else f"{name}\n".encode()
        out[name] = persist(ws, {**spec, "flow": "etl", "filename": f"{name}.txt"}, body)
    return out


RUN1 = {"wf1-load-ret", "wf1-load-eph", "wf1-dump-eph", "wf1-kv-ret"}
RUN1_EPH = {"wf1-load-eph", "wf1-dump-eph"}



def present(service, home: Path, uris: dict[str, str]) -> set[str]:
    """Names whose record, blob and index document all exist; asserts they agree."""
    ids = fresh_index_ids(home)
    alive = set()
    for name, uri in uris.items():
        id_ = uri.rsplit("/", 1)[-1]
        rec = service.catalog.resources.get(id_)
        parts = (rec is not None,
                 rec is not None and (home / rec.path).is_file(),
                 id_ in ids)
        assert len(set(parts)) == 1, (name, parts)
        if parts[0]:
            alive.add(name)
    return alive


def blob_files(home: Path) -> set[str]:
    root = home / "workspaces"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# -- service ---------------------------------------------------------------------------------
def test_service_cleanup_by_tier_then_whole_run(service, home):
    uris = make_runs(lambda ws, spec, body: service.persist(ws, spec, body).resource.uri)
    everything = set(uris)
    assert present(service, home, uris) == everything
    paths = {n: service.catalog.resources.get(u.rsplit("/", 1)[-1]).path for n, u in uris.items()}

    removed = service.delete_workflow(WS, "wf-1", tier="ephemeral")
    assert sorted(r.uri for r in removed) == sorted(uris[n] for n in RUN1_EPH)
    assert present(service, home, uris) == everything - RUN1_EPH
    assert not any((home / paths[n]).exists() for n in RUN1_EPH)

    removed = service.delete_workflow(WS, "wf-1")
    assert sorted(r.uri for r in removed) == sorted(uris[n] for n in RUN1 - RUN1_EPH)
    assert present(service, home, uris) == everything - RUN1
    assert service.workflow_resources(WS, "wf-1").total == 0
    assert service.workflow_resources("ws-other", "wf-1").total == 1
    assert service.delete_workflow(WS, "wf-1") == []                # nothing left: no error
    assert service.delete_workflow(WS, "never-ran") == []

    with pytest.raises(InvalidSpec):
        service.delete_workflow(WS, "wf-2", tier="hot")
    assert "wf2-eph" in present(service, home, uris)


def test_cleanup_of_one_tier_keeps_the_other(service, home):
    uris = make_runs(lambda ws, spec, body: service.persist(ws, spec, body).resource.uri)
    removed = service.delete_workflow(WS, "wf-1", tier="retained")
    assert sorted(r.uri for r in removed) == sorted(uris[n] for n in RUN1 - RUN1_EPH)
    assert present(service, home, uris) == set(uris) - (RUN1 - RUN1_EPH)


# -- CLI -------------------------------------------------------------------------------------
def test_cli_workflow_delete_with_tier(service, home):
    uris = make_runs(lambda ws, spec, body: service.persist(ws, spec, body).resource.uri)
    env = base_env(home)
    env["RESOURCES_WORKSPACE"] = WS

    out = json.loads(cli("workflow", "delete", "wf-1", "--tier", "ephemeral",
                         "--format", "json", env=env).stdout)
    assert sorted(out["data"]["deleted"]) == sorted(uris[n] for n in RUN1_EPH)
    assert out["meta"]["count"] == 2
    assert present(service, home, uris) == set(uris) - RUN1_EPH

    listed = json.loads(cli("workflow", "list", "wf-1", "--format", "json", env=env).stdout)
    assert sorted(i["uri"] for i in listed["data"]["items"]) == \
        sorted(uris[n] for n in RUN1 - RUN1_EPH)

    proc = cli("workflow", "delete", "wf-1", "--tier", "hot", env=env, check=False)
    assert proc.returncode == 2                                     # click rejects the choice
    out = json.loads(cli("workflow", "delete", "wf-1", "--format", "json", env=env).stdout)
    assert sorted(out["data"]["deleted"]) == sorted(uris[n] for n in RUN1 - RUN1_EPH)
    assert present(service, home, uris) == set(uris) - RUN1

    # another workspace's CLI cleans only its own run of the same name
    env["RESOURCES_WORKSPACE"] = "ws-other"
    out = json.loads(cli("workflow", "delete", "wf-1", "--format", "json", env=env).stdout)
    assert out["data"]["deleted"] == [uris["other-ws-wf1"]]
    assert present(service, home, uris) == {"wf10-eph", "wf2-eph", "no-run"}


# -- HTTP ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("wf-cleanup"))
    yield server
    stop_server(server)


def test_http_cleanup_with_tier(srv):
    with srv.client("admin") as c, srv.client("other") as other, srv.client("read") as reader:
        def persist(ws, spec, body):
            client = c if ws == WS else other
            return ok_body(upload(client, body, spec, ws=ws), 201)["data"]["uri"]
        uris = make_runs(persist)
        base = f"/v1/{WS}/workflows/wf-1/resources"
        before_files = blob_files(srv.home)

        error_body(c.delete(base, params={"tier": "hot"}), 400)
        error_body(reader.delete(base, params={"tier": "ephemeral"}), 403)
        error_body(c.delete("/v1/ws-other/workflows/wf-1/resources"), 404)   # not ours
        assert blob_files(srv.home) == before_files

        body = ok_body(c.delete(base, params={"tier": "ephemeral"}))
        assert sorted(body["data"]["deleted"]) == sorted(uris[n] for n in RUN1_EPH)
        assert body["meta"]["count"] == 2
        listed = ok_body(c.get(base))["data"]["items"]
        assert sorted(i["uri"] for i in listed) == sorted(uris[n] for n in RUN1 - RUN1_EPH)
        for n in RUN1_EPH:
            error_body(c.get(f"/v1/{WS}/resources/by-uri", params={"uri": uris[n]}), 404)

        body = ok_body(c.delete(base))
        assert sorted(body["data"]["deleted"]) == sorted(uris[n] for n in RUN1 - RUN1_EPH)
        assert ok_body(c.get(base))["meta"]["total"] == 0
        assert ok_body(c.delete(base))["meta"]["count"] == 0

        # the other workspace's wf-1, other runs and untagged resources are all there
        assert ok_body(other.get("/v1/ws-other/workflows/wf-1/resources"))["meta"]["total"] == 1
        for n in ("wf10-eph", "wf2-eph", "no-run"):
            ok_body(c.get(f"/v1/{WS}/resources/by-uri", params={"uri": uris[n]}))
        removed_ids = {uris[n].rsplit("/", 1)[-1] for n in RUN1}
        assert not (removed_ids & fresh_index_ids(srv.home))
        assert {uris[n].rsplit("/", 1)[-1] for n in set(uris) - RUN1} <= fresh_index_ids(srv.home)
        assert len(blob_files(srv.home)) == len(before_files) - len(RUN1)

"""Issue 18: totals past a threshold, one-pass facets, the web view's single search.

The threshold is lowered on the real index (``total_threshold``) so a handful of
resources cross it; every number is checked against the catalog or an exact count.
Nothing here is timed: speed is bench/'s business (bench/tenancy.py).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import warnings

import pytest

with warnings.catch_warnings():      # starlette's notice about httpx: not ours to fix
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from indexer.schema import indexed_tags
from search_api.app import create_app
from storage.errors import InvalidSpec

WS = "ws-acme"
TAGS = ("red", "green", "blue")


@pytest.fixture
def corpus(service):
    """13 resources of ws-acme (mixed type, tier, root, slot, tags, runs) + 1 elsewhere."""
    service.bind_slot(WS, "archive", "reports/acme")
    service.bind_slot(WS, "lake", "lake/acme")
    for i in range(13):
        # The word is in every display name: ephemeral content is not indexed by default.
        spec: dict = {"filename": f"f{i}.txt", "display-name": f"scaleword {i}",
                      "tier": "ephemeral" if i % 4 == 0 else "retained",
                      "tags": [TAGS[j] for j in range(3) if (i >> j) & 1]}
        if i % 3 == 0:
            spec.update(slot="archive", path=f"exports/{2025 + i % 2}")
        elif i % 3 == 1:
            spec.update(slot="lake")
        if i % 5 == 0:
            spec.update(type="kv", filename="r.json")
            body = json.dumps({"note": f"scaleword item{i}"}).encode()
        elif i % 5 == 1:
            spec["filename"] = f"f{i}.csv"
            body = f"a,b\n1,scaleword\n2,item{i}\n".encode()
        else:
            body = f"scaleword item{i} plain text\n".encode()
        if i % 2:
            spec["workflow-id"] = f"run-{i % 3}"
        service.persist(WS, spec, body)
    service.persist("ws-other", {"filename": "x.txt", "tags": ["red"]}, b"scaleword elsewhere\n")
    return service


def brute_force(service, match) -> dict[str, Counter]:
    """Counts per facet over the catalog's own records (what the index must agree with)."""
    counts: dict[str, Counter] = {k: Counter() for k in
                                  ("type", "tier", "storage-root", "slot", "content-major",
                                   "tag", "workflow-id")}
    for res in service.catalog.resources.in_workspace(WS):
        if not match(res):
            continue
        counts["type"][res.type] += 1
        counts["tier"][res.tier] += 1
        counts["storage-root"][res.storage_root] += 1
        counts["slot"][res.slot] += 1
        counts["content-major"][res.content_type.split("/")[0].lower()] += 1
        counts["workflow-id"][res.workflow_id] += 1
        for tag in indexed_tags(res):
            counts["tag"][tag] += 1
    return counts


def as_counter(facet: dict) -> Counter:
    out = Counter({b["value"]: b["count"] for b in facet["buckets"]})
    if facet["missing"]:
        out[None] = facet["missing"]
    return out


# -- totals ----------------------------------------------------------------------------------
def test_total_is_exact_up_to_the_threshold_then_a_lower_bound(corpus):
    svc = corpus
    svc.index.total_threshold = 5
    exact = svc.search(WS, "scaleword", {"exact-total": "true"}, limit=3)
    assert (exact.total, exact.total_relation) == (13, "eq")
    capped = svc.search(WS, "scaleword", {}, limit=3)
    assert (capped.total, capped.total_relation) == (5, "gte")
    small = svc.search(WS, "scaleword", {"tier": "ephemeral"}, limit=3)   # 4 matches
    assert (small.total, small.total_relation) == (4, "eq")
    listed = svc.list(WS, {}, limit=2)
    assert (listed.total, listed.total_relation) == (5, "gte")
    assert svc.list(WS, {"exact-total": True}, limit=2).total == 13
    svc.index.total_threshold = 10_000
    assert svc.search(WS, "scaleword", {}, limit=3).total_relation == "eq"
    with pytest.raises(InvalidSpec):
        svc.search(WS, "scaleword", {"exact-total": "maybe"})


@pytest.mark.parametrize("q", ["scaleword", None])
def test_paging_is_the_same_whatever_the_total(corpus, q):
    """Cursors walk every match with a capped total, and the pages equal the exact run."""
    svc = corpus
    svc.index.total_threshold = 3

    def walk(params: dict) -> tuple[list[str], list[tuple[int, str]]]:
        seen, totals, cursor = [], [], None
        while True:
            page = svc.search(WS, q, params, limit=4, cursor=cursor)
            seen += [r.uri for r in page.items]
            totals.append((page.total, page.total_relation))
            cursor = page.next_cursor
            if cursor is None:
                return seen, totals
    capped, capped_totals = walk({})
    exact, exact_totals = walk({"exact-total": "1"})
    assert capped == exact and len(set(exact)) == 13
    assert all(t == (13, "eq") for t in exact_totals)
    assert capped_totals[0] == (3, "gte")
    # A later browse page counts only what lies past its cursor: 5 left is over 3.
    assert all(rel == "gte" for _, rel in capped_totals[:-1])
    # A cursor made without exact-total serves a request with it, and the reverse.
    first = svc.search(WS, q, {}, limit=4)
    assert [r.uri for r in svc.search(WS, q, {"exact-total": "true"}, limit=4,
                                      cursor=first.next_cursor).items] == exact[4:8]


def test_expired_resources_stay_out_of_totals_and_facets(corpus, settings):
    svc = corpus
    before = svc.search(WS, "scaleword", {"facets": "tier", "exact-total": "1"}, limit=1)
    ephemeral = svc.settings.tiers["ephemeral"].retention_seconds
    # Run the same search from a moment when ephemeral resources have expired (gc not run).
    real_now = svc.now
    svc.now = lambda: real_now() + ephemeral + 1     # an instance attribute, this test only
    after = svc.search(WS, "scaleword", {"facets": "tier", "exact-total": "1"}, limit=1)
    assert before.total == 13 and after.total == 9
    tiers = {b["value"]: b["count"] for b in after.facets["tier"]["buckets"]}
    assert tiers == {"retained": 9}


@pytest.mark.parametrize("q,params", [
    ("scaleword", {}), (None, {}), ("scaleword", {"sort": "name"}), (None, {"tag": "red"}),
])
@pytest.mark.parametrize("slack", [8, 0])
def test_expired_dropped_after_the_search_equal_the_exclusion_clause(corpus, monkeypatch,
                                                                    q, params, slack):
    """Unswept expired documents are dropped from the hits after the search (and taken
    off the count) instead of by a MustNot clause: every page, cursor and total is what
    the clause gives. ``slack`` 0 forces the second, larger fetch of a short page."""
    import indexer.reader as reader
    svc = corpus
    real_now = svc.now
    svc.now = lambda: real_now() + svc.settings.tiers["ephemeral"].retention_seconds + 1

    def walk(extra: dict, limit: int) -> list:
        out, cursor = [], None
        while True:
            page = svc.search(WS, q, {**params, **extra}, limit=limit, cursor=cursor)
            out.append(([r.uri for r in page.items], page.total, page.total_relation))
            cursor = page.next_cursor
            if cursor is None:
                return out

    monkeypatch.setattr(reader, "POSTFILTER_SLACK", slack)
    for limit in (1, 2, 5):
        for extra in ({}, {"exact-total": "1"}):
            dropped = walk(extra, limit)
            monkeypatch.setattr(reader, "POSTFILTER_MAX", 0)      # the MustNot clause
            clause = walk(extra, limit)
            monkeypatch.setattr(reader, "POSTFILTER_MAX", 256)
            assert dropped == clause
            uris = [u for items, _, _ in dropped for u in items]
            assert len(uris) == len(set(uris)) == dropped[0][1]
            assert all(svc.get(WS, u).tier == "retained" for u in uris)


# -- facets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("q,params,match", [
    (None, {}, lambda r: True),
    ("scaleword", {}, lambda r: True),
    ("csv", {}, lambda r: r.filename.endswith(".csv")),
    ("item3 OR item7", {}, lambda r: r.display_name in ("scaleword 3", "scaleword 7")),
    (None, {"tier": "retained"}, lambda r: r.tier == "retained"),
    (None, {"slot": "archive"}, lambda r: r.slot == "archive"),
    ("scaleword", {"tag": "red"}, lambda r: "red" in r.tags),
    (None, {"type": "result", "exclude-tier": "ephemeral"},
     lambda r: r.type == "result" and r.tier != "ephemeral"),
])
def test_facets_equal_a_brute_force_count_over_the_catalog(corpus, q, params, match):
    svc = corpus
    page = svc.search(WS, q, {**params, "facets": "all", "exact-total": "1"}, limit=1)
    expected = brute_force(svc, match)
    assert page.total == sum(expected["type"].values())
    assert set(page.facets) == set(expected)
    for name, counts in expected.items():
        got = page.facets[name]
        assert got["exact"] and got["other"] == 0, name
        if name == "tag":
            assert got["missing"] is None           # several per resource: no remainder
            assert as_counter(got) == counts, name
        else:
            assert as_counter(got) == +counts, name


def test_facet_selection_size_and_errors(corpus):
    svc = corpus
    page = svc.search(WS, None, {"facets": "tag,tier", "facet-size": "1"}, limit=1)
    assert list(page.facets) == ["tier", "tag"]
    tags = page.facets["tag"]
    assert len(tags["buckets"]) == 1 and tags["buckets"][0]["value"] in TAGS
    all_tags = brute_force(svc, lambda r: True)["tag"]
    assert tags["buckets"][0]["count"] == max(all_tags.values())
    assert tags["other"] == sum(all_tags.values()) - tags["buckets"][0]["count"]
    assert svc.search(WS, None, {}, limit=1).facets is None
    for bad in ({"facets": "colour"}, {"facets": "tag", "facet-size": "0"}):
        with pytest.raises(InvalidSpec):
            svc.search(WS, None, bad)


# -- HTTP, CLI, web ---------------------------------------------------------------------------
@pytest.fixture
def client(corpus):
    with TestClient(create_app(service=corpus, background=False)) as c:
        _, key = corpus.keys.create(WS, ["resources.read"], None, corpus.now())
        c.key = key
        c.headers["Authorization"] = f"Bearer {key}"
        yield c


def test_http_meta_total_relation_and_facets(client, corpus):
    corpus.index.total_threshold = 5
    r = client.get(f"/v1/{WS}/resources/search", params={"q": "scaleword", "facets": "type"})
    assert r.status_code == 200, r.text
    meta = r.json()["meta"]
    assert (meta["total"], meta["total-relation"]) == (5, "gte")
    assert {b["value"]: b["count"] for b in meta["facets"]["type"]["buckets"]} == \
        {"file": 10, "result": 3}
    r = client.get(f"/v1/{WS}/resources", params={"exact-total": "true"})
    assert (r.json()["meta"]["total"], r.json()["meta"]["total-relation"]) == (13, "eq")
    assert "facets" not in r.json()["meta"]
    assert client.get(f"/v1/{WS}/resources/search",
                      params={"q": "x", "facets": "nope"}).status_code == 400
    # The Breyta face keeps its fields; its cursor does not stop at a capped total.
    body = client.get("/api/resources", params={"limit": 10}).json()
    assert {"items", "total", "limit", "offset", "nextCursor"} <= set(body)
    assert body["totalRelation"] == "gte" and body["nextCursor"]
    rest = client.get("/api/resources", params={"limit": 10, "cursor": body["nextCursor"]}).json()
    assert len(body["items"]) + len(rest["items"]) == 13 and rest["nextCursor"] is None
    doc = client.get("/openapi.json").json()
    names = {p["name"] for p in doc["paths"]["/v1/{ws}/resources/search"]["get"]["parameters"]}
    assert {"exact-total", "facets", "facet-size"} <= names


def test_web_search_page_runs_one_search_and_one_aggregation(client, corpus):
    calls = Counter()
    for name in ("search", "facets"):
        real = getattr(corpus.index, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        setattr(corpus.index, name, counted)       # the real method, counted
    del client.headers["Authorization"]
    login = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    r = client.post("/ui/login", data={"key": client.key, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    calls.clear()
    page = client.get(f"/ui/{WS}/search", params={"q": "scaleword"})
    assert page.status_code == 200
    assert calls == Counter(search=1, facets=1)
    shown = dict(re.findall(r'data-facet="([^"]*)">(\d+)<', page.text))
    expected = brute_force(corpus, lambda r: True)
    for name, key in (("type", "type"), ("tier", "tier"), ("tag", "tag"),
                      ("content-major", "content-major"), ("storage-root", "storage-root")):
        for value, n in expected[name].items():
            if n:
                assert int(shown[f"{key}:{value or ''}"]) == n, (key, value)
    assert "Counts estimated" not in page.text
    # Past the threshold the page says its counts are estimates from a sample.
    corpus.index.total_threshold = corpus.index.facet_sample_docs = 5
    sampled = client.get(f"/ui/{WS}/search", params={"q": "scaleword"})
    assert sampled.status_code == 200 and "Counts estimated from" in sampled.text


def test_cli_exact_total_and_facets(tmp_path: Path):
    import os
    import subprocess
    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "resources"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env.update(RESOURCES_HOME=str(tmp_path / "home"), RESOURCES_WORKSPACE=WS)

    def run(*args: str) -> dict:
        proc = subprocess.run([str(exe), *args, "--format", "json"], env=env,
                              capture_output=True, timeout=60, input=b"clitotal word\n")
        assert proc.returncode == 0, proc.stderr.decode()
        return json.loads(proc.stdout)
    run("persist", "-", "--filename", "a.txt", "--tag", "t1")
    out = run("search", "clitotal", "--exact-total", "--facets", "tag,type")
    assert out["meta"]["total-relation"] == "eq" and out["meta"]["total"] == 1
    assert out["meta"]["facets"]["tag"]["buckets"] == [{"value": "t1", "count": 1}]
    listed = run("list", "--facets", "all")
    assert listed["meta"]["facets"]["type"]["buckets"] == [{"value": "file", "count": 1}]


def test_workspace_clause_left_out_only_while_the_index_holds_one_workspace(service):
    """A single-workspace index drops the (select-everything) workspace clause; the moment
    another workspace has a document, the clause is back and nothing leaks."""
    svc = service
    for i in range(3):
        svc.persist(WS, {"filename": f"a{i}.txt"}, b"solo tenancyword\n")
    assert svc.index._only_workspace(svc.index.searcher(), WS)
    assert not svc.index._only_workspace(svc.index.searcher(), "ws-other")
    page = svc.search(WS, "tenancyword", {"facets": "type", "exact-total": "1"}, limit=10)
    assert page.total == 3 and len(page.items) == 3
    assert page.facets["type"]["buckets"] == [{"value": "file", "count": 3}]
    assert svc.search("ws-other", "tenancyword", {}, limit=10).total == 0
    assert svc.list("ws-other", {}, limit=10).items == []
    listed = svc.list(WS, {"facets": "tier"}, limit=2)     # no words, no filters at all
    assert len(listed.items) == 2 and listed.total == 3 and listed.next_cursor
    assert listed.facets["tier"]["buckets"] == [{"value": "retained", "count": 3}]
    other = svc.persist("ws-other", {"filename": "b.txt"}, b"other tenancyword\n").resource
    assert not svc.index._only_workspace(svc.index.searcher(), WS)
    assert {r.workspace for r in svc.search(WS, "tenancyword", {}, limit=10).items} == {WS}
    assert [r.uri for r in svc.search("ws-other", "tenancyword", {}, limit=10).items] == \
        [other.uri]
    assert svc.list(WS, {"exact-total": "1"}, limit=10).total == 3
    # Deleted: ws-other's term may linger in the dictionary, which only keeps the clause.
    svc.delete("ws-other", other.uri)
    assert svc.search(WS, "tenancyword", {"exact-total": "1"}, limit=10).total == 3
    assert svc.search("ws-other", "tenancyword", {}, limit=10).total == 0


def test_index_sweeps_expired_documents_ahead_of_gc_and_nothing_changes(corpus):
    """The writer deletes expired resources' documents from the index (ahead of gc):
    searches, totals and facets are the same before and after, doctor sees no drift, and
    gc afterwards removes the records with nothing left over."""
    from search_api.doctor import diagnose
    svc = corpus
    real_now = svc.now
    later = real_now() + svc.settings.tiers["ephemeral"].retention_seconds + 1
    svc.now = lambda: later
    params = {"facets": "tier", "exact-total": "1"}
    before = svc.search(WS, "scaleword", params, limit=20)
    listed = svc.list(WS, {"exact-total": "1"}, limit=20)
    indexed = svc.index.count()
    assert svc.index.sweep_expired(int(later)) == 4       # i % 4 == 0 of 13: ephemeral
    assert svc.index.count() == indexed - 4
    assert svc.index.sweep_expired(int(later)) == 0       # nothing left to sweep
    after = svc.search(WS, "scaleword", params, limit=20)
    assert [r.uri for r in after.items] == [r.uri for r in before.items]
    assert (after.total, after.facets) == (before.total, before.facets) == (9, after.facets)
    assert [r.uri for r in svc.list(WS, {"exact-total": "1"}, limit=20).items] == \
        [r.uri for r in listed.items]
    kinds = {p.kind for p in diagnose(svc, verify_bytes=False)}
    assert kinds == {"expired-present"}                   # gc's job, not index drift
    svc.gc()
    assert diagnose(svc, verify_bytes=False) == []
    assert svc.search(WS, "scaleword", params, limit=20).total == 9


def test_follower_sweeps_expired_documents_by_the_service_clock(service):
    """`serve`'s follower runs the sweep as the elected writer, by the clock it is given
    (the service's: RESOURCES_CLOCK_FILE in tests), never by the system clock alone."""
    import time

    from indexer.follower import IndexFollower
    for i in range(3):
        service.persist(WS, {"filename": f"e{i}.txt", "tier": "ephemeral",
                             "display-name": "sweepword"}, b"sweepword\n")
    service.persist(WS, {"filename": "kept.txt", "display-name": "sweepword"}, b"sweepword\n")
    assert service.index.count() == 4
    clock = [service.now()]                  # now: nothing has expired yet
    follower = IndexFollower(service.index, expire_every=0.05, log=lambda m: None,
                             clock=lambda: clock[0]).start()
    try:
        time.sleep(0.5)
        assert service.index.count() == 4
        clock[0] += service.settings.tiers["ephemeral"].retention_seconds + 1
        deadline = time.monotonic() + 20
        while service.index.count() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        follower.stop()
    assert service.index.count() == 1
    assert [r.filename for r in service.search(WS, "sweepword").items] == ["kept.txt"]


def test_broad_facets_are_estimated_from_the_sample_buckets(service):
    """Past the threshold (and without exact-total) facets are counted on the documents
    of the first sample buckets and scaled: exactly the estimate the catalog gives for
    the same buckets; exact-total still counts every match."""
    import math

    from indexer.schema import SAMPLE_BUCKETS, sample_bucket
    svc = service
    with svc.batch():
        for i in range(600):
            svc.persist(WS, {"filename": f"s{i}.txt", "display-name": "sampleword",
                             "tier": "ephemeral" if i % 3 == 0 else "retained",
                             "tags": [TAGS[i % 3]]}, b"sampleword\n")
    svc.index.total_threshold = 100
    svc.index.facet_sample_docs = 150
    page = svc.search(WS, "sampleword", {"facets": "tier,tag"}, limit=5)
    assert (page.total, page.total_relation) == (100, "gte")
    buckets = math.ceil(SAMPLE_BUCKETS * 150 / 600)
    sample = [r for r in svc.catalog.resources.in_workspace(WS) if sample_bucket(r.id) < buckets]
    scale = 600 / len(sample)
    for name, values in (("tier", lambda r: [r.tier]), ("tag", lambda r: r.tags)):
        counted = Counter(v for r in sample for v in values(r))
        facet = page.facets[name]
        assert facet["exact"] is False and facet["sample"] == len(sample)
        assert as_counter(facet) == Counter({v: round(n * scale) for v, n in counted.items()})
    exact = svc.search(WS, "sampleword", {"facets": "tier,tag", "exact-total": "1"}, limit=5)
    assert as_counter(exact.facets["tier"]) == Counter(retained=400, ephemeral=200)
    assert exact.facets["tag"]["exact"] is True and "sample" not in exact.facets["tag"]


def test_another_process_sees_the_sweep_at_its_next_expiry_check(service, settings):
    """The sweep does not move the change-log position, so readers elsewhere (another
    `serve` worker) reload when they find expired documents still showing."""
    from search_api.service import ResourceService
    for i in range(2):
        service.persist(WS, {"filename": f"e{i}.txt", "tier": "ephemeral"}, b"x\n")
    service.persist(WS, {"filename": "kept.txt"}, b"x\n")
    other = ResourceService(settings, log=lambda m: None)
    try:
        assert other.index.count() == 3
        later = int(service.now() + settings.tiers["ephemeral"].retention_seconds + 1)
        assert other.index.reload_if_expired(int(service.now())) is False
        assert service.index.sweep_expired(later) == 2
        assert other.index.count() == 3             # its searcher still shows them
        assert other.index.reload_if_expired(later) is True
        assert other.index.count() == 1
        assert other.index.reload_if_expired(later) is False       # nothing left to see
    finally:
        other.close()

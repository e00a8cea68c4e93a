"""The catalog contract: every catalog implementation passes these same tests.

Adding a catalog is one module in storage/catalog/ and one line in CATALOGS below. Each
test gets an empty catalog (SQLite: a fresh file in tmp_path; PostgreSQL: a fresh
database on the session's server, tests/pg_server.py).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest

from storage.catalog import Catalog
from storage.catalog.record_cache import RecordCache
from storage.records import Extraction, Resource, Slot


def make_sqlite(request, tmp_path: Path) -> Callable[[], Catalog]:
    return lambda: Catalog(tmp_path / "catalog.db")


def make_pg(request, tmp_path: Path) -> Callable[[], Catalog]:
    url = request.getfixturevalue("pg_url")       # a fresh database per test
    return lambda: Catalog(url)


CATALOGS: dict[str, Callable[..., Callable[[], Catalog]]] = {
    "sqlite": make_sqlite,
    "postgresql": make_pg,
}


@pytest.fixture(params=list(CATALOGS))
def open_catalog(request, tmp_path: Path):
    """A factory: each call is another handle (another process's view) on one catalog."""
    made: list[Catalog] = []
    factory = CATALOGS[request.param](request, tmp_path)

    def open_() -> Catalog:
        made.append(factory())
        return made[-1]
    yield open_
    for cat in made:
        cat.close()


@pytest.fixture
def cat(open_catalog) -> Catalog:
    return open_catalog()


def resource(id_: str, workspace: str = "ws", path: str | None = None, **kw) -> Resource:
    fields = dict(id=id_, workspace=workspace,
                  type="file", tier="retained", display_name=f"{id_}.txt",
                  filename=f"{id_}.txt", content_type="text/plain", size=10, sha256="0" * 64,
                  storage_backend="platform", connection="platform", storage_root=None,
                  path_under_root=None, path=path or f"workspaces/{workspace}/{id_}.txt",
                  slot=None, flow=None, step=None, workflow_id=None, tags=[],
                  source_label="", created_at=1.0, updated_at=1.0, expires_at=None,
                  version=1, content_indexed=True, content_truncated=False)
    fields.update(kw)
    return Resource(**fields)


def put(cat: Catalog, res: Resource, text: str = "") -> int:
    with cat.transaction() as tx:
        res.seq = cat.changes.next_seq(tx)
        return cat.resources.upsert(tx, res, text)


# -- resources ---------------------------------------------------------------------------
def test_a_record_round_trips_with_its_text(cat):
    res = resource("R1", tags=["a", "b"], expires_at=50.0)
    put(cat, res, "hello")
    got = cat.resources.get("R1")
    assert got is not None and got.to_row() == res.to_row()
    assert cat.resources.extract_text("R1") == "hello"
    assert cat.resources.extract_texts(["R1", "nope"]) == {"R1": "hello"}
    assert cat.resources.by_location("platform", res.path).id == "R1"
    assert cat.resources.get("missing") is None


def test_upsert_replaces_and_update_keeps_the_text(cat):
    res = resource("R1")
    put(cat, res, "one")
    res.version, res.size = 2, 20
    put(cat, res, "two")
    assert cat.resources.get("R1").version == 2
    assert cat.resources.extract_text("R1") == "two"
    res.display_name = "renamed"
    with cat.transaction() as tx:
        cat.resources.update(tx, res)
    assert cat.resources.get("R1").display_name == "renamed"
    assert cat.resources.extract_text("R1") == "two"
    assert cat.resources.count() == 1


def test_record_cache_serves_what_get_many_serves(open_catalog):
    """Search pages' records (RecordCache): a change made through another handle (another
    process) is seen at once, a deleted record is left out, and the cache stays bounded."""
    a, b = open_catalog(), open_catalog()
    for i in range(3):
        put(a, resource(f"R{i}"), "x")
    ids = ["R0", "R1", "R2", "missing"]
    first = a.records.get_many(ids)
    assert set(first) == {"R0", "R1", "R2"}
    assert a.records.get_many(ids)["R0"] is first["R0"]      # served without a re-read
    changed = b.resources.get("R1")
    changed.display_name = "renamed"
    with b.transaction() as tx:
        changed.seq = b.changes.next_seq(tx)      # as every writer does (lifecycle, overrides)
        b.resources.update(tx, changed)
    with b.transaction() as tx:
        b.resources.delete(tx, "R2")
    again = a.records.get_many(ids)
    assert set(again) == {"R0", "R1"}
    assert again["R1"].display_name == "renamed"
    assert {k: v.seq for k, v in again.items()} == \
        {k: v.seq for k, v in a.resources.get_many(ids).items()}
    small = RecordCache(a.resources, size=1)
    assert set(small.get_many(["R0", "R1"])) == {"R0", "R1"}
    assert len(small._records) == 1


def test_one_record_per_location(cat):
    put(cat, resource("R1", path="same"))
    with pytest.raises(Exception):
        put(cat, resource("R2", path="same"))
    assert cat.resources.count() == 1       # the failed transaction left nothing


def test_delete_removes_record_and_text(cat):
    put(cat, resource("R1"), "x")
    with cat.transaction() as tx:
        cat.resources.delete(tx, "R1")
    assert cat.resources.get("R1") is None and cat.resources.extract_text("R1") == ""


def test_named_queries(cat):
    put(cat, resource("A", workflow_id="wf", tier="ephemeral", expires_at=10.0))
    put(cat, resource("B", workflow_id="wf", path="workspaces/ws/run/b_%.txt"))
    put(cat, resource("C", workspace="other", workflow_id="wf"))
    put(cat, resource("D", path="workspaces/ws/RUN/d.txt", storage_root="r1"))
    assert [r.id for r in cat.resources.of_workflow("ws", "wf")] == ["A", "B"]
    assert [r.id for r in cat.resources.of_workflow("ws", "wf", "ephemeral")] == ["A"]
    assert [r.id for r in cat.resources.expired(10.0)] == ["A"]
    assert list(cat.resources.expired(9.9)) == []
    # A prefix is matched byte for byte: no case folding, no LIKE wildcards.
    assert [r.id for r in cat.resources.under("platform", "workspaces/ws/run/")] == ["B"]
    assert list(cat.resources.under("platform", "workspaces/ws/run/b__")) == []
    assert [r.id for r in cat.resources.in_workspace("other")] == ["C"]
    assert sorted(r.id for r in cat.resources.all()) == ["A", "B", "C", "D"]
    assert cat.resources.count("ws") == 3
    assert cat.resources.storage_roots("ws") == ["r1"]
    assert set(cat.resources.get_many(["A", "C", "zz"])) == {"A", "C"}


def test_iteration_pages_through_many(cat):
    with cat.transaction() as tx:
        for i in range(2300):
            r = resource(f"R{i:05d}")
            r.seq = cat.changes.next_seq(tx)
            cat.resources.upsert(tx, r, "")
    assert sum(1 for _ in cat.resources.all()) == 2300
    assert len(cat.resources.get_many([f"R{i:05d}" for i in range(1200)])) == 1200


def test_aggregates(cat):
    put(cat, resource("A", size=5, extraction=Extraction(error="boom")))
    put(cat, resource("B", size=7, tier="ephemeral"))
    put(cat, resource("C", workspace="w2", size=1))
    assert cat.resources.tier_usage("ws", "retained") == (5, 1)
    assert sorted(cat.resources.usage_by_tier()) == [("w2", "retained", 1, 1),
                                                     ("ws", "ephemeral", 1, 7),
                                                     ("ws", "retained", 1, 5)]
    assert cat.resources.usage_groups("ws") == [("ws", "ephemeral", "", 1, 7),
                                                ("ws", "retained", "", 1, 5)]
    assert cat.resources.extraction_failures() == 1
    assert cat.resources.extraction_failures("w2") == 0


def test_a_failed_transaction_leaves_nothing(cat):
    with pytest.raises(RuntimeError):
        with cat.transaction() as tx:
            cat.resources.upsert(tx, resource("R1"), "x")
            raise RuntimeError("crash")
    assert cat.resources.get("R1") is None and cat.changes.head() == 0


# -- change log --------------------------------------------------------------------------
def test_positions_increase_and_are_never_reused_after_pruning(cat):
    with cat.transaction() as tx:
        first = cat.changes.append(tx, "X")
    cat.changes.set_follower("a", first)
    assert cat.changes.prune() == 1
    with cat.transaction() as tx:
        second = cat.changes.append(tx, "Y")
    assert second > first
    assert cat.changes.after(0) == [(second, "Y")]
    assert cat.changes.head() == second


def test_head_survives_pruning_everything(cat):
    with cat.transaction() as tx:
        pos = cat.changes.append(tx, "X")
    cat.changes.set_follower("a", pos)
    cat.changes.prune()
    assert cat.changes.after(0) == [] and cat.changes.head() == pos
    assert cat.changes.oldest() is None and cat.changes.backlog() == 0


def test_a_reader_sees_a_prefix_of_the_log(open_catalog):
    a, b = open_catalog(), open_catalog()
    with a.transaction() as tx:
        x = a.changes.append(tx, "X")
    seen = b.changes.after(0)
    with b.transaction() as tx:
        y = b.changes.append(tx, "Y")
    # A follower that applied what it saw resumes after it, so Y is still ahead of it.
    assert seen == [(x, "X")]
    assert a.changes.after(seen[-1][0]) == [(y, "Y")]


def test_pruning_stops_at_the_slowest_follower(cat):
    with cat.transaction() as tx:
        positions = [cat.changes.append(tx, f"R{i}") for i in range(5)]
    cat.changes.set_follower("fast", positions[4])
    cat.changes.set_follower("slow", positions[1])
    cat.changes.prune()
    assert [p for p, _ in cat.changes.after(0)] == positions[2:]
    assert cat.changes.pruned_through() == positions[1]
    cat.changes.set_follower("slow", positions[0])          # a follower never moves back
    assert cat.changes.followers()["slow"][0] == positions[1]
    assert cat.changes.backlog() == positions[4] - positions[1]
    cat.changes.drop_follower("slow")
    assert set(cat.changes.followers()) == {"fast"}


def test_seq_comes_from_a_counter(cat):
    with cat.transaction() as tx:
        values = [cat.changes.next_seq(tx) for _ in range(3)]
    assert values == sorted(set(values)) and len(values) == 3


def test_concurrent_writers_commit_positions_in_order(open_catalog):
    """Writers on separate handles: every position a reader sees has all below it."""
    handles = [open_catalog() for _ in range(4)]
    reader = open_catalog()
    seen_gaps: list[list[int]] = []

    def write(c: Catalog, n: int) -> None:
        for i in range(n):
            with c.transaction() as tx:
                c.changes.append(tx, f"{id(c)}-{i}")

    threads = [threading.Thread(target=write, args=(h, 40)) for h in handles]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        got = [p for p, _ in reader.changes.after(0, limit=100_000)]
        if got and got != list(range(got[0], got[0] + len(got))):
            seen_gaps.append(got)
    for t in threads:
        t.join()
    assert seen_gaps == []
    assert len(reader.changes.after(0, limit=1000)) == 160


# -- intents -----------------------------------------------------------------------------
def test_intents_are_kept_until_dropped_and_can_be_quarantined(cat):
    with cat.transaction() as tx:
        a = cat.intents.add(tx, "persist", {"n": 1}, 1.0)
    b = cat.intents.add_now("delete", {"n": 2}, 2.0)
    assert b > a
    assert cat.intents.pending() == [(a, "persist", {"n": 1}), (b, "delete", {"n": 2})]
    cat.intents.quarantine(a, "persist", {"n": 1}, "why", 3.0)
    assert [i for i, _, _ in cat.intents.pending()] == [b]
    ((qid, kind, payload),) = cat.intents.quarantined()
    assert (qid, kind, payload["_error"]) == (a, "persist", "why")
    with cat.transaction() as tx:
        cat.intents.drop(tx, b)
    assert cat.intents.pending() == []


# -- slots, picker origins, idempotency ----------------------------------------------
def test_slots_keep_their_creation_time_on_rebind(cat):
    cat.slots.put(Slot("ws", "out", "platform", "a", 1.0, 1.0))
    cat.slots.put(Slot("ws", "out", "s3", "b", 5.0, 5.0))
    cat.slots.put(Slot("w2", "in", "platform", "c", 2.0, 2.0))
    assert cat.slots.get("ws", "out") == Slot("ws", "out", "s3", "b", 1.0, 5.0)
    assert [s.name for s in cat.slots.list()] == ["in", "out"]
    assert [s.name for s in cat.slots.list("ws")] == ["out"]
    assert cat.slots.get("ws", "nope") is None


def test_picker_origins_are_replaced_whole(cat):
    assert cat.picker_origins.replace("ws", ["https://b", "https://a"], 1.0) == \
        ["https://a", "https://b"]
    assert cat.picker_origins.replace("ws", ["https://c"], 2.0) == ["https://c"]
    assert cat.picker_origins.get("other") == []


def test_idempotency_keys(cat):
    with cat.transaction() as tx:
        cat.idempotency.put(tx, "ws", "k", "h1", "R1", 1.0)
    assert cat.idempotency.get("ws", "k") == ("h1", "R1")
    with cat.transaction() as tx:
        cat.idempotency.put(tx, "ws", "k", "h2", "R2", 2.0)
        assert cat.idempotency.get("ws", "k", tx) == ("h2", "R2")
    assert cat.idempotency.get("other", "k") is None


# -- keys and sessions ---------------------------------------------------------------
def test_keys(cat):
    cat.keys.add("k1", "ws", "hash1", '["search"]', "ci", 1.0)
    cat.keys.add("k2", "w2", "hash2", '["admin"]', "", 2.0)
    assert cat.keys.get("k1") == ("ws", "hash1", '["search"]')
    assert [k[0] for k in cat.keys.list()] == ["k1", "k2"]
    assert [k[0] for k in cat.keys.list("w2")] == ["k2"]
    assert cat.keys.delete("k1", workspace="w2") is None       # another workspace's key
    assert cat.keys.delete("k1") == "ws" and cat.keys.get("k1") is None


def test_ended_sessions_expire(cat):
    cat.keys.end_session("s1", expires_at=10.0)
    assert cat.keys.session_ended("s1", now=5.0)
    assert not cat.keys.session_ended("s2", now=5.0)
    assert not cat.keys.session_ended("s1", now=11.0)


# -- kv ----------------------------------------------------------------------------------
def test_kv_rows(cat):
    with cat.transaction() as tx:
        for i, key in enumerate(["a/1", "a/2", "b/1"]):
            cat.kv.put(tx, ("ws", key, '{"v": %d}' % i, 1, 1.0, 1.0,
                            5.0 if key == "a/2" else None, cat.changes.next_seq(tx)))
    rows, total = cat.kv.page("ws", "a/", now=1.0, before_seq=None, limit=10)
    assert total == 2 and [r[1] for r in rows] == ["a/2", "a/1"]        # newest first
    rows, total = cat.kv.page("ws", "a/", now=6.0, before_seq=None, limit=10)
    assert total == 1 and [r[1] for r in rows] == ["a/1"]               # a/2 expired
    assert cat.kv.expired(6.0) == [("ws", "a/2")]
    assert [r[1] for r in cat.kv.live(6.0)] == ["a/1", "b/1"]
    assert cat.kv.sweep(6.0) == 1 and cat.kv.count() == 2
    with cat.transaction() as tx:
        cat.kv.put(tx, ("ws", "a/1", '{"v": 9}', 2, 1.0, 7.0, None, cat.changes.next_seq(tx)))
        cat.kv.delete(tx, "ws", "b/1")
    assert cat.kv.get("ws", "a/1")[2:4] == ('{"v": 9}', 2) and cat.kv.get("ws", "b/1") is None


# -- upload sessions -------------------------------------------------------------------
def _session(id_: str, uri: str = "res://u", expires: float = 100.0) -> dict:
    return {"id": id_, "workspace": "ws", "resource_id": "R", "uri": uri, "key": "k",
            "staging_key": f"stage/{id_}", "filename": "f", "content_type": "text/plain",
            "replace": 0, "state": "pending", "size": 0, "created_at": 1.0,
            "expires_at": expires}


def test_upload_sessions_move_through_their_states_once(cat):
    assert cat.uploads.open(_session("s1")) == []
    assert cat.uploads.open(_session("s2")) == ["stage/s1"]      # s1 superseded
    assert cat.uploads.get("ws", "s1") is None
    assert cat.uploads.latest_open("ws", "res://u")["id"] == "s2"
    assert cat.uploads.move("s2", "uploaded", ("pending", "uploaded"), size=3)
    assert cat.uploads.move("s2", "completing", ("uploaded",))
    assert not cat.uploads.move("s2", "completing", ("uploaded",))   # claimed once
    assert cat.uploads.get("ws", "s2")["size"] == 3
    assert cat.uploads.get("other", "s2") is None
    cat.uploads.open(_session("s3", uri="res://v", expires=5.0))
    assert cat.uploads.staging_keys() == {"stage/s2", "stage/s3"}
    assert cat.uploads.sweep(now=6.0) == ["stage/s3"]


# -- the database itself -----------------------------------------------------------------
def test_health_probes(cat):
    cat.ping()
    assert cat.probe_writable(2.0) is None
    assert cat.integrity() == []
    assert cat.schema_version() >= 7


# -- nodes and background jobs ---------------------------------------------------------
def test_nodes_heartbeat_with_their_follower_positions(cat):
    cat.changes.set_follower("index-a", 7)
    cat.nodes.heartbeat("a", "http://a", "index-a", 1.0, 10.0)
    cat.nodes.heartbeat("b", "http://b", "index-b", 2.0, 10.0)
    cat.nodes.heartbeat("a", "http://a", "index-a", 1.0, 20.0)
    rows = {n.name: n for n in cat.nodes.list()}
    assert (rows["a"].heartbeat_at, rows["a"].position) == (20.0, 7)
    assert rows["b"].position is None                 # its index has not registered yet
    assert cat.nodes.slowest_live(now=21.0, live_within=5.0) == (7, 1)   # b is stale
    assert cat.nodes.slowest_live(now=12.0, live_within=5.0) == (0, 2)
    cat.nodes.remove("b")
    assert [n.name for n in cat.nodes.list()] == ["a"]


def test_a_due_job_is_claimed_once(open_catalog):
    a, b = open_catalog(), open_catalog()
    assert a.nodes.claim_due("gc", now=100.0, interval=60.0)
    assert not b.nodes.claim_due("gc", now=100.0, interval=60.0)
    assert not b.nodes.claim_due("gc", now=159.0, interval=60.0)
    assert b.nodes.claim_due("gc", now=160.0, interval=60.0)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda c=c: results.append(
        c.nodes.claim_due("sweep", now=5.0, interval=60.0))) for c in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


# -- embedding vectors (semantic search) -------------------------------------------------
def test_vectors_replace_forget_and_report(cat):
    from storage.catalog.vectors import Chunk, chunk_key
    put(cat, resource("A"))
    put(cat, resource("B"))
    vec = bytes(range(256)) * 3                  # 384 float16 values
    keys = cat.vectors.replace("A", "ws", cat.resources.get("A").seq, "m1",
                               [Chunk(0, 5, vec), Chunk(5, 9, vec[::-1])])
    assert keys == [chunk_key("A", 0), chunk_key("A", 1)]
    assert cat.vectors.docs(["A", "B"]) == {"A": ("ws", cat.resources.get("A").seq, "m1")}
    rows = list(cat.vectors.vectors_of(["A"]))
    assert sorted(bytes(r[4]) for r in rows) == sorted([vec, vec[::-1]])
    assert cat.vectors.spans([keys[1]]) == {keys[1]: ("A", 5, 9)}
    assert cat.vectors.pending("ws", "m1") == 1                 # B has none
    assert cat.vectors.missing()[0] == 1 and cat.vectors.counts() == (1, 2)
    with cat.transaction() as tx:
        cat.resources.delete(tx, "A")
    assert cat.vectors.orphans()[1] == ["A"]
    cat.vectors.forget(["A"])
    assert cat.vectors.counts() == (0, 0)

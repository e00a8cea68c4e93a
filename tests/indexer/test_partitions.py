"""Index partitions (indexer/partitions.py): a big workspace in a Tantivy index of its
own, the rest in a shared one. Proved on real indexes against a single index that
follows the same catalog: same results, totals and facets; no workspace sees another's
documents; deletes and replacements land in the right partition; rebuild, self-heal and
a crash between two partitions' commits end in the same documents as the catalog."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tantivy

from indexer.index import SearchIndex
from indexer.partitions import PARTS_DIR, SHARED, PartitionPolicy
from indexer.query import Filters, parse_text
from search_api.service import ResourceService
from storage.config import Settings

BIG, SMALL, OTHER = "ws-big", "ws-small", "ws-other"
REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000


def partitioned_settings(home: Path) -> Settings:
    s = Settings.from_env(home)
    s.index_partition_workspaces = (BIG,)
    return s


@pytest.fixture
def psvc(home: Path):
    svc = ResourceService(partitioned_settings(home), log=lambda m: None)
    yield svc
    svc.close()


def doc(ws: str, i: int) -> tuple[dict, bytes]:
    """Document ``i`` of a workspace: the same words everywhere, tags, tiers, kinds, a slot."""
    spec: dict = {"filename": f"doc{i}.txt", "tags": [f"t{i % 3}"],
                  "tier": "ephemeral" if i % 4 == 0 else "retained"}
    if i % 3 == 0:
        spec.update(slot="archive", path="exports/2026")
    text = f"sharedword {'rareword' if i == 1 else ''} item{i} {ws} {'alpha ' * (i % 4)}beta"
    if i % 5 == 0:
        spec.update(type="kv", filename=f"r{i}.json")
        return spec, json.dumps({"note": text}).encode()
    return spec, text.encode()


def fill(svc: ResourceService, sizes=((BIG, 12), (SMALL, 5), (OTHER, 3))
         ) -> dict[str, list[str]]:
    made: dict[str, list[str]] = {}
    for ws, n in sizes:
        svc.bind_slot(ws, "archive", f"reports/{ws}")
        for i in range(n):
            spec, body = doc(ws, i)
            made.setdefault(ws, []).append(svc.persist(ws, spec, body).resource.id)
    return made


def single_index(svc: ResourceService, home: Path) -> SearchIndex:
    """A second index on the same catalog, all in one partition (the old layout)."""
    index = SearchIndex(home / "index-single", svc.catalog, log=lambda m: None,
                        policy=PartitionPolicy(min_docs=10**9))
    index.sync()
    return index


def answer(index: SearchIndex, ws: str, q: str | None, filters: Filters | None = None):
    filters = filters or Filters()
    text = parse_text(index._current(ws), q or "") if q else None
    page = index.search(ws, text, filters, NOW, 100, snippets=False)
    facets = index.facets(ws, text, filters, NOW, ["type", "tier", "tag", "storage-root"])
    return page, facets


def test_layout_and_routing(psvc: ResourceService, home: Path):
    made = fill(psvc)
    live = home / os.readlink(home / "index")
    assert (live / PARTS_DIR / BIG / "meta.json").exists()
    assert (live / "meta.json").exists()              # the shared partition, as before
    assert psvc.index.partitions() == {"shared": 8, BIG: 12}
    assert psvc.index.count() == 20
    located = psvc.index._live().locate([*made[BIG], *made[SMALL]])
    assert all(located[i] == [BIG] for i in made[BIG])
    assert all(located[i] == [SHARED] for i in made[SMALL])
    # A big workspace's own partition holds only it: the workspace clause is dropped.
    assert psvc.index._only_workspace(psvc.index.searcher(BIG), BIG)
    assert not psvc.index._only_workspace(psvc.index.searcher(SMALL), SMALL)


@pytest.mark.parametrize("q,filters", [
    (None, Filters()), ("sharedword", Filters()), ("alpha", Filters()),
    ("alpha OR rareword", Filters()), ('"alpha beta"', Filters()),
    ("sharedword", Filters(tags=["t1"])), (None, Filters(tier="ephemeral")),
    ("beta", Filters(storage_root="reports/ws-big", path_prefix="exports/2026")),
    ("beta", Filters(types=["result"])), (None, Filters(sort="name")),
])
def test_results_totals_and_facets_equal_a_single_index(psvc, home, q, filters):
    fill(psvc)
    single = single_index(psvc, home)
    try:
        for ws in (BIG, SMALL, OTHER):
            (page, facets), (want, want_facets) = (answer(psvc.index, ws, q, filters),
                                                   answer(single, ws, q, filters))
            assert page.total == want.total and page.relation == want.relation
            assert {h.id for h in page.hits} == {h.id for h in want.hits}
            if q is None:     # newest first or by a field: the same order, hit for hit
                assert [h.id for h in page.hits] == [h.id for h in want.hits]
            assert facets == want_facets
    finally:
        single.release_writer()


def test_a_workspace_never_sees_another(psvc: ResourceService):
    made = fill(psvc)
    for ws in (BIG, SMALL, OTHER):
        for q in (None, "sharedword", "ws-big OR ws-small OR ws-other", "*"):
            page = psvc.search(ws, q, limit=100)
            found = {r.id for r in page.items}
            # Every document for a browse; with words, those whose text is indexed
            # (an ephemeral resource's content is not, by default).
            assert found == set(made[ws]) if q in (None, "*") else \
                found and found <= set(made[ws]), (ws, q)
            assert all(r.workspace == ws for r in page.items)
            assert page.total == len(found)


def test_ranked_order_in_a_partition_is_the_workspace_alone(psvc, home, tmp_path):
    """Scores in a dedicated partition depend only on that workspace's documents: the
    ranking equals an index of that workspace alone (a shared index mixes in the other
    workspaces' term statistics)."""
    made = fill(psvc)
    alone = ResourceService(Settings.from_env(tmp_path / "alone"), log=lambda m: None)
    try:
        fill(alone, ((BIG, 12),))
        for q in ("alpha", "alpha OR rareword"):
            ours = [(r.filename, round(s, 4)) for r, s in
                    ((r, psvc.search(BIG, q).scores[r.id]) for r in psvc.search(BIG, q).items)]
            theirs = [(r.filename, round(alone.search(BIG, q).scores[r.id], 4))
                      for r in alone.search(BIG, q).items]
            assert dict(ours) == dict(theirs)      # the same score per document
            assert [s for _, s in ours] == [s for _, s in theirs]   # ties in any order
        assert len(made[BIG]) == 12
    finally:
        alone.close()


def test_deletes_and_replacements_land_in_the_right_partition(psvc: ResourceService):
    fill(psvc)
    big = psvc.persist(BIG, {"filename": "moving.txt"}, b"replaceword one\n").resource
    small = psvc.persist(SMALL, {"filename": "moving.txt"}, b"replaceword one\n").resource
    psvc.update_overrides(BIG, big.uri, {"text": "replacedword"})
    psvc.persist(SMALL, {"filename": "moving.txt"}, b"replacedword two\n")   # same key
    live = psvc.index._live()
    assert live.locate([big.id, small.id]) == {big.id: [BIG], small.id: [SHARED]}
    assert [r.id for r in psvc.search(BIG, "replacedword").items] == [big.id]
    assert psvc.search(BIG, "replaceword").total == 0
    assert psvc.search(SMALL, "replacedword").total == 1
    before = psvc.index.partitions()
    psvc.delete(BIG, big.uri)
    psvc.delete(SMALL, psvc.search(SMALL, "replacedword").items[0].uri)
    after = psvc.index.partitions()
    assert after == {"shared": before["shared"] - 1, BIG: before[BIG] - 1}
    assert psvc.search(BIG, "replacedword").total == 0
    assert psvc.search(SMALL, "replacedword").total == 0
    assert dict(psvc.index.doc_ids()) == {r.id: r.seq for r in psvc.catalog.resources.all()}


def test_rebuild_decides_the_partitions_from_the_catalog(psvc: ResourceService, home: Path):
    made = fill(psvc)
    psvc.index.policy = PartitionPolicy(min_docs=5, named=(), max_dedicated=8)
    old = os.readlink(home / "index")
    assert psvc.reindex() == 20
    assert os.readlink(home / "index") != old and not (home / old).exists()
    assert psvc.index.partitions() == {"shared": 3, BIG: 12, SMALL: 5}
    for ws, ids in made.items():
        assert {r.id for r in psvc.search(ws, None, limit=100).items} == set(ids)
    # A bound: only the biggest get their own; a named one always does.
    assert PartitionPolicy(min_docs=5, max_dedicated=1).plan(
        {BIG: 12, SMALL: 5, OTHER: 3}) == [BIG]
    assert PartitionPolicy(min_docs=5, named=(OTHER,), max_dedicated=2).plan(
        {BIG: 12, SMALL: 5, OTHER: 3}) == [BIG, OTHER]


def test_a_deleted_partition_heals_itself(psvc: ResourceService, home: Path):
    made = fill(psvc)
    live = home / os.readlink(home / "index")
    shutil.rmtree(live / PARTS_DIR / BIG)
    page = psvc.search(BIG, None, limit=100)
    assert {r.id for r in page.items} == set(made[BIG])
    assert psvc.index.partitions()[BIG] == 12


def test_an_old_layout_rebuilds_into_partitions(home: Path):
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    try:
        made = fill(svc)
        live = home / os.readlink(home / "index")
        (live / "SCHEMA_VERSION").write_text("5")        # an index of the old layout
        (live / "PARTITIONS").unlink()
    finally:
        svc.close()
    logs: list[str] = []
    svc = ResourceService(partitioned_settings(home), log=logs.append)
    try:
        assert any("schema version changed" in m for m in logs), logs
        assert svc.index.partitions() == {"shared": 8, BIG: 12}
        assert {r.id for r in svc.search(BIG, None, limit=100).items} == set(made[BIG])
    finally:
        svc.close()


def crashword_count(path: Path) -> int:
    index = tantivy.Index.open(str(path))
    query = index.parse_query("crashword", ["content"])
    return index.searcher().search(query, 1, count=True).count


CRASH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from search_api.service import ResourceService
    from storage.config import Settings
    home, big_uri, small_uri = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    s = Settings.from_env(home)
    s.index_partition_workspaces = ("ws-big",)
    svc = ResourceService(s, log=lambda m: None)
    with svc.batch():        # one batch: the index applies every change in one go
        svc.persist("ws-big", {"filename": "new.txt"}, b"crashword big")
        svc.persist("ws-small", {"filename": "new.txt"}, b"crashword small")
        svc.delete("ws-big", big_uri)
        svc.delete("ws-small", small_uri)
        svc.update_overrides("ws-big", svc.search("ws-big", "item2").items[0].uri,
                             {"text": "overriddenword"})
    svc.index.sync()         # RESOURCES_FAULT kills it between two partitions' commits
    print("not killed")
""")


def test_crash_between_partition_commits_reapplies(home: Path):
    first = ResourceService(partitioned_settings(home), log=lambda m: None)
    try:
        fill(first)
        big = first.search(BIG, "item1").items[0]
        small = first.search(SMALL, "item1").items[0]
        position = first.index.applied
    finally:
        first.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env["RESOURCES_FAULT"] = "index.between_partitions"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(home), big.uri, small.uri],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    live = home / os.readlink(home / "index")
    assert int((live / "APPLIED").read_text()) == position   # not recorded: re-applied
    # The kill came between the two commits: one partition has the batch, one has not.
    committed = {name: crashword_count(live / sub) for name, sub in
                 ((BIG, f"{PARTS_DIR}/{BIG}"), (SHARED, "."))}
    assert sorted(committed.values()) == [0, 1], committed
    svc = ResourceService(partitioned_settings(home), log=lambda m: None)   # re-applies
    try:
        svc.index.sync()
        assert dict(svc.index.doc_ids()) == {r.id: r.seq for r in svc.catalog.resources.all()}
        assert [r.filename for r in svc.search(BIG, "crashword").items] == ["new.txt"]
        assert svc.search(SMALL, "crashword").total == 1
        assert svc.search(BIG, "item1").total == 0 and svc.search(SMALL, "item1").total == 0
        assert svc.search(BIG, "overriddenword").total == 1
        assert svc.index.partitions() == {"shared": 8, BIG: 12}
    finally:
        svc.close()


def test_cursors_and_total_relation_in_a_dedicated_partition(psvc: ResourceService):
    made = fill(psvc)
    seen: list[str] = []
    page = psvc.search(BIG, None, limit=5)
    while True:
        seen += [r.id for r in page.items]
        # A write between pages (a commit to this very partition) neither repeats nor
        # skips anything: the keyset cursor is a seq, not a position in one commit.
        psvc.persist(BIG, {"filename": f"late{len(seen)}.txt"}, b"late arrival")
        if not page.next_cursor:
            break
        page = psvc.search(BIG, None, limit=5, cursor=page.next_cursor)
    assert len(seen) == len(set(seen)) and set(made[BIG]) <= set(seen)
    # A cursor is bound to its query: another workspace's search refuses it.
    first = psvc.search(BIG, None, limit=2)
    with pytest.raises(Exception, match="cursor"):
        psvc.search(SMALL, None, limit=2, cursor=first.next_cursor)
    psvc.index.total_threshold = 3
    try:
        page = psvc.search(BIG, "beta", limit=2)
        assert (page.total, page.total_relation) == (3, "gte")
        exact = psvc.search(BIG, "beta", {"exact-total": "true"}, limit=2)
        assert exact.total_relation == "eq" and exact.total > 3
    finally:
        psvc.index.total_threshold = 10_000


def test_doctor_finds_and_repairs_a_dedicated_partition(psvc: ResourceService, home: Path):
    from indexer.schema import build_schema
    from search_api import doctor
    made = fill(psvc)
    path = home / os.readlink(home / "index") / PARTS_DIR / BIG
    index = tantivy.Index(build_schema(), str(path), reuse=True)
    writer = index.writer(15_000_000, 1)
    writer.delete_documents_by_term("id", made[BIG][0])        # index-missing
    ghost = tantivy.Document()
    ghost.add_text("id", "ghost-id")
    ghost.add_text("workspace", BIG)
    ghost.add_integer("seq", 1)
    writer.add_document(ghost)                                  # index-extra
    writer.commit()
    writer.wait_merging_threads()
    report = doctor.run(psvc)
    assert report["counts"]["index-missing"] == 1 and report["counts"]["index-extra"] == 1
    report = doctor.run(psvc, do_repair=True)
    assert report["ok"], report["problems"]
    assert psvc.index._live().locate([made[BIG][0]]) == {made[BIG][0]: [BIG]}
    searcher = psvc.index.searcher(BIG)
    ghost_query = tantivy.Query.term_query(build_schema(), "id", "ghost-id")
    assert searcher.search(ghost_query, 1, count=True).count == 0

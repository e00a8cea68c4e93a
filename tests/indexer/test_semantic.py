"""Semantic and hybrid search with the real model (issue 19): no fake embedder.

One embedded corpus per module (embedding runs at ~20 chunks/s on 2 cores); the ONNX
graph is built once per session and linked into each data home.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from indexer.embed import DIM, HEADS, LN_EPS, Embedder, ensure_graph, model_dir, model_key
from indexer.chunking import MAX_CHUNKS, chunk_resource
from search_api.app import create_app
from search_api.service import ResourceService
from storage.config import Settings
from storage.errors import InvalidSpec, NotEnabled

ROOT = Path(__file__).resolve().parents[2]
WS, OTHER = "ws-sem", "ws-sem-other"

#: name -> (workspace, tags, text). The queries below share no content word with the
#: documents they are meant to find.
CORPUS = {
    "bill": (WS, ["finance"], "Invoice 4471 for consulting services rendered in March. "
             "The amount due is 1,200 EUR; payment is now thirty days overdue."),
    "cat": (WS, ["pets"], "Our cat likes to sleep in the sun on the windowsill all "
            "afternoon and purrs when stroked."),
    "car": (WS, ["garage"], "Vehicle maintenance log: oil change, tyre rotation and a "
            "brake inspection at 60,000 km."),
    "payroll": (WS, ["finance"], "Salaries of the staff were transferred on the 25th; "
                "the accounting ledger was reconciled afterwards."),
    "recipe": (WS, ["kitchen"], "Knead the dough for ten minutes, let it rise for an hour, "
               "then bake the loaf at 220 degrees."),
    "zeph": (WS, ["garden"], "Zephyrine roses need pruning in late winter and a sunny, "
             "sheltered spot."),
    "hike": (WS, ["travel"], "We walked up the mountain trail at dawn and reached the "
             "summit hut before noon."),
    "other-bill": (OTHER, ["finance"], "Invoice 9001: the amount due is 300 EUR, payment "
                   "overdue since April."),
}


@pytest.fixture(scope="session")
def graph_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("models")
    ensure_graph(cache)
    return cache


def semantic_home(home: Path, graph_cache: Path) -> Settings:
    """A data home with semantic search on and the session's graph linked in."""
    (home / "models").mkdir(parents=True, exist_ok=True)
    name = f"minilm-{model_key(model_dir())}.onnx"
    target = home / "models" / name
    if not target.exists():
        os.link(graph_cache / name, target)
    s = Settings(home=home)
    s.semantic = True
    return s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, graph_cache):
    home = tmp_path_factory.mktemp("semantic") / "home"
    svc = ResourceService(semantic_home(home, graph_cache), log=lambda m: None)
    uris = {}
    with svc.batch():
        for i, (name, (ws, tags, text)) in enumerate(CORPUS.items()):
            # neutral names: the words of the queries must not hide in a filename
            uris[name] = svc.persist(ws, {"filename": f"note-{i}.txt", "tags": tags},
                                     text.encode()).resource
    svc.semantic.sync()
    yield svc, uris
    svc.close()


def names(page, uris) -> list[str]:
    by_id = {r.id: n for n, r in uris.items()}
    return [by_id.get(r.id, r.id) for r in page.items]


# -- the model ---------------------------------------------------------------------------
def _numpy_forward(weights, ids, mask):
    def lin(x, p):
        return x @ weights[f"{p}.weight"].T.astype(np.float64) + weights[f"{p}.bias"]

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * weights[f"{p}.weight"] + weights[f"{p}.bias"]

    erf = np.vectorize(math.erf, otypes=[np.float64])
    b, t = ids.shape
    x = (weights["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + weights["embeddings.position_embeddings.weight"][:t][None]
         + weights["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    neg = (1.0 - mask[:, None, None, :]) * -1e9
    hd = DIM // HEADS
    for i in range(6):
        p = f"encoder.layer.{i}"

        def heads(y):
            return y.reshape(b, t, HEADS, hd).transpose(0, 2, 1, 3)
        q, k, v = (heads(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + neg
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, t, DIM)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    m = mask[..., None]
    mean = (x * m).sum(1) / m.sum(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def test_onnx_graph_equals_a_numpy_forward_pass(graph_cache):
    from safetensors.numpy import load_file
    emb = Embedder(graph_cache)
    texts = ["the unpaid bill", "Vehicle maintenance log: oil change and brakes, twice."]
    ids, mask = emb.encode_ids(texts)
    ref = _numpy_forward(load_file(str(model_dir() / "model.safetensors")), ids, mask)
    got = emb.embed(texts)
    assert np.abs(got - ref).max() < 1e-5
    # the shipped tokenizer.json truncated at 128: the model's own 256 is used
    long_ids, _ = emb.encode_ids(["word " * 400])
    assert long_ids.shape[1] == 256


def test_chunks_are_capped_and_carry_name_and_path(corpus):
    svc, uris = corpus
    tok = svc.semantic.embedder.splitter
    res = uris["bill"]
    long = " ".join(f"sentence {i} about invoices and payments." for i in range(3000))
    chunks = chunk_resource(res, long, tok)
    assert len(chunks) == MAX_CHUNKS
    assert all(c.text.startswith(f"{res.display_name} (workspaces/{WS}/persist/note-0.txt)")
               for c in chunks)
    assert all(len(tok.encode(c.text).ids) <= 256 for c in chunks)
    # windows overlap: each starts before the previous one ends
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))


# -- acceptance ----------------------------------------------------------------------------
def test_a_paraphrase_finds_its_document_semantically_not_lexically(corpus):
    svc, uris = corpus
    q = "the unpaid bill"
    assert svc.search(WS, q).items == []
    assert svc.search(WS, "unpaid bill", keyword_mode="any").items == []   # no shared word
    page = svc.search(WS, q, mode="semantic")
    assert page.mode == "semantic" and names(page, uris)[0] == "bill"
    assert page.semantic_pending == 0
    assert "Invoice 4471" in page.snippets[uris["bill"].id]      # from the best chunk
    assert names(svc.search(WS, "feline napping by the window", mode="semantic"),
                 uris)[0] == "cat"


def test_hybrid_keeps_exact_matches_on_top(corpus):
    svc, uris = corpus
    for q in ("zephyrine", "brake inspection", "ledger"):
        lexical = names(svc.search(WS, q), uris)
        hybrid = svc.search(WS, q, mode="hybrid")
        assert hybrid.mode == "hybrid"
        assert names(hybrid, uris)[0] == lexical[0]
        assert "<b>" in hybrid.snippets[hybrid.items[0].id]       # the lexical snippet
    # and still finds by meaning what the words miss
    assert names(svc.search(WS, "the unpaid bill", mode="hybrid"), uris)[0] == "bill"


def test_workspaces_never_mix(corpus):
    svc, uris = corpus
    for mode in ("semantic", "hybrid"):
        page = svc.search(WS, "invoice overdue payment amount due", limit=100, mode=mode)
        assert uris["other-bill"].id not in {r.id for r in page.items}
        assert {r.workspace for r in page.items} == {WS}
        other = svc.search(OTHER, "invoice overdue payment amount due", mode=mode)
        assert names(other, uris) == ["other-bill"]


def test_every_filter_applies_exactly_in_every_mode(corpus):
    svc, uris = corpus
    want = {n for n, (ws, tags, _) in CORPUS.items() if ws == WS and "finance" in tags}
    for mode in ("semantic", "hybrid"):
        page = svc.search(WS, "a mountain walk at dawn", {"tag": "finance"}, limit=50,
                          mode=mode)
        # every document the filter selects, none other, however far from the query
        assert set(names(page, uris)) == want and page.total == len(want)
    assert svc.search(WS, "the unpaid bill", {"accept": "application/pdf"},
                      mode="semantic").items == []
    # paging: two pages of one are the first page of two
    for mode in ("semantic", "hybrid"):
        two = names(svc.search(WS, "money", limit=2, mode=mode), uris)
        first = svc.search(WS, "money", limit=1, mode=mode)
        second = svc.search(WS, "money", limit=1, cursor=first.next_cursor, mode=mode)
        assert len(two) == 2 and names(first, uris) + names(second, uris) == two


def test_a_deleted_resource_leaves_semantic_results_at_once(corpus, tmp_path):
    svc, uris = corpus
    res = svc.persist(WS, {"filename": "umbrella.txt"},
                      b"Remember to take an umbrella: heavy rain expected all week.").resource
    svc.semantic.sync()
    q = "wet weather forecast"
    assert names(svc.search(WS, q, mode="semantic"), uris)[0] == res.id
    # Deleted by another process (its own service): this one's follower has not
    # applied anything yet, and still never returns it.
    other = ResourceService(svc.settings, log=lambda m: None)
    try:
        other.delete(WS, res.uri)
    finally:
        other.close()
    svc.semantic_follower = object()      # as in serve: no catch-up on the request path
    try:
        for mode in ("semantic", "hybrid"):
            assert res.id not in {r.id for r in svc.search(WS, q, mode=mode).items}
    finally:
        svc.semantic_follower = None
    svc.semantic.sync()
    assert svc.semantic.doc_seq(res.id) is None


def test_a_new_process_loads_the_saved_index_and_applies_the_log_since(tmp_path, graph_cache):
    settings = semantic_home(tmp_path / "home", graph_cache)
    svc = ResourceService(settings, log=lambda m: None)
    try:
        keep = svc.persist(WS, {"filename": "k.txt"}, CORPUS["cat"][2].encode()).resource
        gone = svc.persist(WS, {"filename": "g.txt"}, CORPUS["bill"][2].encode()).resource
        svc.semantic.sync()
        assert (settings.home / "vectors" / "manifest.json").exists()   # saved by the sync
        # after the files were written: one deleted, one added (not embedded by anyone)
        svc.delete(WS, gone.uri)
        new = svc.persist(WS, {"filename": "n.txt"}, CORPUS["car"][2].encode()).resource
    finally:
        svc.close()
    again = ResourceService(settings, log=lambda m: None)
    try:
        sem = again.semantic
        again.semantic_follower = object()      # no catch-up: what the files + log show
        sem.ensure_loaded()
        assert sem._saved >= 0                  # loaded from the files, not rebuilt
        ids = {r.id for r in again.search(WS, "the unpaid bill", limit=10, mode="semantic").items}
        assert gone.id not in ids and keep.id in ids and new.id not in ids
        assert again.search(WS, "x", mode="semantic").semantic_pending == 1
        again.semantic_follower = None
        ids = {r.id for r in again.search(WS, "car servicing", limit=10, mode="semantic").items}
        assert new.id in ids                    # caught up
    finally:
        again.close()


def test_unknown_mode_is_400_and_off_is_501(corpus, tmp_path):
    svc, _ = corpus
    with pytest.raises(InvalidSpec, match="mode must be one of lexical, semantic, hybrid"):
        svc.search(WS, "x", mode="psychic")
    app = TestClient(create_app(service=svc, background=False))
    _, key = svc.keys.create(WS, ["resources.read"], None, svc.now())
    h = {"Authorization": f"Bearer {key}"}
    r = app.get(f"/v1/{WS}/resources/search", params={"q": "x", "mode": "psychic"}, headers=h)
    assert r.status_code == 400 and "mode must be one of" in r.text
    r = app.get(f"/v1/{WS}/resources/search", params={"q": "the unpaid bill",
                                                      "mode": "semantic"}, headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["meta"]["mode"] == "semantic" and body["meta"]["semantic-pending"] == 0
    off_settings = Settings(home=tmp_path / "off")
    off_settings.semantic = False
    off = ResourceService(off_settings, log=lambda m: None)
    try:
        _, off_key = off.keys.create(WS, ["resources.read"], None, off.now())
        client = TestClient(create_app(service=off, background=False))
        for mode in ("semantic", "hybrid"):
            r = client.get(f"/v1/{WS}/resources/search", params={"q": "x", "mode": mode},
                           headers={"Authorization": f"Bearer {off_key}"})
            assert r.status_code == 501 and "RESOURCES_SEMANTIC=off" in r.text
        with pytest.raises(NotEnabled):
            off.search(WS, "x", mode="hybrid")
    finally:
        off.close()


def test_breyta_mode_returns_the_mode_that_ran(corpus):
    svc, uris = corpus
    _, key = svc.keys.create(WS, ["resources.read"], None, svc.now())
    client = TestClient(create_app(service=svc, background=False))
    h = {"Authorization": f"Bearer {key}", "X-Breyta-Client": "cli"}
    for mode in ("lexical", "semantic", "hybrid"):
        r = client.get("/api/resources/search", params={"q": "unpaid bill", "mode": mode},
                       headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == mode
        if mode != "lexical":
            assert body["items"][0]["uri"] == uris["bill"].uri
            assert body["semanticPending"] == 0
    r = client.get("/api/resources/search", params={"q": "x", "mode": "psychic"}, headers=h)
    assert r.status_code == 400


# -- crash safety ----------------------------------------------------------------------------
DRIVER = """
import sys
from storage.config import Settings
from search_api.service import ResourceService
s = Settings.from_env(sys.argv[1])
svc = ResourceService(s, log=lambda m: None)
svc.semantic.sync()
print("finished")
"""


@pytest.mark.parametrize("point", ["semantic.after_embed@3", "semantic.after_position@2"])
def test_kill_9_while_embedding_loses_no_vector(tmp_path, graph_cache, point):
    settings = semantic_home(tmp_path / "home", graph_cache)
    svc = ResourceService(settings, log=lambda m: None)
    try:
        first = [svc.persist(WS, {"filename": f"a{i}.txt"},
                             f"note {i} about the harvest".encode()).resource for i in range(3)]
        svc.semantic.sync()                    # reconciled: now it follows the log
        later = [svc.persist(WS, {"filename": f"b{i}.txt"},
                             f"memo {i}: the shipment left the port".encode()).resource
                 for i in range(30)]
        env = {**os.environ, "RESOURCES_SEMANTIC": "on", "RESOURCES_FAULT": point,
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(settings.home)], env=env,
                              capture_output=True, timeout=120, cwd=ROOT)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        store = svc.semantic.store
        done_before = store.counts()[0]
        assert len(first) < done_before < len(first) + len(later)   # killed midway
        svc.semantic.sync()                    # resumes from the stored position
        assert store.pending(WS, "all-MiniLM-L6-v2/1") == 0
        assert store.counts()[0] == len(first) + len(later)
        hits = svc.search(WS, "cargo departed the harbour", limit=100, mode="semantic")
        assert {r.id for r in later} <= {r.id for r in hits.items}
    finally:
        svc.close()


def test_doctor_reports_vectors_and_reindex_semantic_rebuilds(corpus):
    from search_api import doctor
    svc, uris = corpus
    report = doctor.semantic_report(svc)
    assert report["missing-vectors"] == 0 and report["orphan-vectors"] == 0
    assert report["embedded"] == len(svc.catalog.resources.get_many([r.id for r in uris.values()]))
    # a vector whose resource went away behind the store's back is reported, then dropped
    from storage.catalog.vectors import Chunk
    svc.semantic.store.replace("ghost", WS, 1, "all-MiniLM-L6-v2/1",
                               [Chunk(0, 0, np.zeros(384, np.float16).tobytes())])
    assert doctor.semantic_report(svc)["orphan-vectors"] == 1
    assert doctor.semantic_report(svc, do_repair=True)["orphan-vectors"] == 0
    json.dumps(report)


# -- serve: embedding in the background ------------------------------------------------------
def test_serve_embeds_in_the_background_and_answers_every_mode(tmp_path, graph_cache):
    import time

    import httpx
    from server import start_server, stop_server, upload
    semantic_home(tmp_path / "srv" / "home", graph_cache)
    server = start_server(tmp_path / "srv", extra_env={"RESOURCES_SEMANTIC": "on",
                                                       "RESOURCES_WRITE_ACK": "durable"})
    try:
        with httpx.Client(base_url=server.base, timeout=30, headers={
                "Authorization": f"Bearer {server.keys['admin']}"}) as c:
            started = time.monotonic()
            for name in ("bill", "cat", "car"):
                r = upload(c, CORPUS[name][2].encode(), {"filename": f"{name[:1]}x.txt"})
                assert r.status_code == 201, r.text
            # acknowledged at durability, before any embedding: never on the write path
            assert time.monotonic() - started < 5
            deadline = time.monotonic() + 60
            while True:
                r = c.get("/v1/ws-acme/resources/search",
                          params={"q": "the unpaid bill", "mode": "semantic"})
                assert r.status_code == 200, r.text
                meta = r.json()["meta"]
                if meta["semantic-pending"] == 0 and r.json()["data"]["items"]:
                    break
                assert time.monotonic() < deadline, meta
                time.sleep(0.3)
            assert meta["mode"] == "semantic"
            assert r.json()["data"]["items"][0]["filename"] == "bx.txt"
            r = c.get("/v1/ws-acme/resources/search", params={"q": "brake", "mode": "hybrid"})
            assert r.json()["meta"]["mode"] == "hybrid"
            assert r.json()["data"]["items"][0]["filename"] == "cx.txt"
            r = c.get("/v1/ws-acme/resources/search", params={"q": "x", "mode": "fuzzy"})
            assert r.status_code == 400 and "mode must be one of" in r.text
    finally:
        stop_server(server)

"""Semantic search: chunk embeddings following the change log, one usearch index per workspace.

**Writing** (one process at a time: the holder of ``<home>/locks/semantic-writer.lock``,
like the Tantivy writer): ``sync()`` reads the change log past the ``semantic``
follower position (``followers`` table), and for each changed resource reads its current
record: gone means its vectors are forgotten; otherwise its indexed text is cut into
chunks, embedded, and stored in the catalog (``storage.catalog.vectors``, float16) in one
transaction, and only then the position moves (small batches of 8 changes). A crash
(even SIGKILL) between the two re-applies the batch at the next start; a resource whose
stored vectors already match its record ``seq`` is skipped, so nothing is embedded twice
and nothing is lost. When the follower is new, or behind the pruned end of the log, a
*reconcile* embeds every resource whose vectors are missing or stale and drops vectors
whose resource is gone, then follows from where the log stood when it began.

**Chunks**: the text that the lexical index holds (extracted, or the override text) in
windows of ``WINDOW_TOKENS`` word-piece tokens overlapping by ``OVERLAP_TOKENS``, each
prefixed by the display name and the path (context), at most ``MAX_CHUNKS`` per resource
(the rest of a very long text is not embedded; its words stay searchable lexically).
A resource without text gets one chunk: its name and path.

**Reading**: every process keeps one usearch index per workspace (float16, inner
product over unit vectors = cosine) in memory, kept current by applying the change log
past the position it shows (the writer's own batches are applied at once). The writer
saves the indexes under ``<home>/vectors/`` (one file per workspace, then a manifest
with the position they show, each replaced atomically) at most once a minute and when
it stops; a process starting loads them (~0.2 s) and applies the log since, instead of
rebuilding from the catalog (inserting costs ~1,000 vectors/s on this machine). Files
that are missing, of another model, or behind the pruned end of the log are ignored:
the catalog's vectors are the truth, the files only a cache. A resource's documents are ranked by their
best chunk. Filters are exact: candidates are checked against the same Tantivy filter
query as a lexical search (the over-fetch grows until enough pass, up to an exact scan),
and a selective filter (few matching documents) is answered by an exact scan of only
those documents' vectors. Results are checked against the catalog on the way out: a
deleted or replaced resource (its record gone, or its ``seq`` moved past the vectors')
is never returned, whatever the follower has done yet.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from storage.catalog import Catalog
from storage.events import emit
from storage.faults import fault
from storage.catalog.vectors import FOLLOWER, RECONCILE_FOLLOWER, Chunk, chunk_key

from .chunking import MAX_CHUNKS, chunk_resource
from .leader import LeaderLock

#: Change-log rows per durable step of the follower (a kill -9 redoes at most this).
BATCH_CHANGES = 8
MODEL_ID = "all-MiniLM-L6-v2/1"
SNIPPET_CHARS = 200


class SemanticIndex:
    def __init__(self, catalog: Catalog, home: Path,
                 log: Callable[[str], None] | None = None, threads: int = 2) -> None:
        self.catalog = catalog
        self.home = home
        self.store = catalog.vectors
        self.threads = threads
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self.leader = LeaderLock(home / "locks" / "semantic-writer.lock")
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()
        self._mutex = threading.RLock()          # the in-memory indexes and maps
        self._sync_lock = threading.Lock()       # one sync of this process at a time
        self._indexes: dict[str, Any] = {}
        self._key_id: dict[int, str] = {}
        self._docs: dict[str, tuple[str, int, tuple[int, ...]]] = {}
        #: record seq -> id, of the vectors in memory: a Tantivy hit's seq (its fast
        #: field, no stored-document read) names the document, and a seq the record
        #: has since moved past names nothing (stale vectors never match)
        self._seq_id: dict[int, str] = {}
        self._shown = -1                         # log position the memory shows; -1: not loaded
        self._saved = -1                         # position of the files under <home>/vectors
        self.stop_event = threading.Event()

    # -- model ---------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    from storage.errors import NotEnabled

                    from .embed import Embedder, ModelMissing
                    try:
                        self._embedder = Embedder(self.home / "models", self.threads)
                    except ModelMissing as exc:
                        raise NotEnabled(f"semantic search is unavailable: {exc}") from None
        return self._embedder

    def embed_query(self, q: str) -> np.ndarray:
        return self.embedder.embed([q])[0]

    # -- memory --------------------------------------------------------------------------
    @staticmethod
    def _new_index():
        # onnxruntime must be loaded before usearch: `import usearch.index` first, then
        # `import onnxruntime`, segfaults (usearch 2.26.6, onnxruntime 1.2x wheels, here).
        import onnxruntime  # noqa: F401
        from usearch.index import Index
        return Index(ndim=384, metric="ip", dtype="f16")

    def _position(self) -> int:
        return self.catalog.changes.followers().get(FOLLOWER, (0, 0.0))[0]

    @property
    def vectors_dir(self) -> Path:
        return self.home / "vectors"

    def save(self) -> bool:
        """Write this memory's indexes and the position they show (the writer only, when
        something changed); True when written."""
        with self._mutex:
            if self._shown < 0 or self._shown == self._saved:
                return False
            directory = self.vectors_dir
            directory.mkdir(parents=True, exist_ok=True)
            files = {}
            for ws, index in self._indexes.items():
                name = hashlib.sha256(ws.encode()).hexdigest()[:20] + ".usearch"
                tmp = directory / f".{name}.{os.getpid()}.tmp"
                index.save(str(tmp))
                os.replace(tmp, directory / name)
                files[ws] = name
            manifest = {"position": self._shown, "model": MODEL_ID, "workspaces": files}
            tmp = directory / f".manifest.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, directory / "manifest.json")
            self._saved = self._shown
            return True

    def _load_saved(self) -> bool:
        """Load the saved indexes when they can serve: same model, not ahead of the
        stored position nor behind the pruned log; the maps come from the catalog, the
        changes since from the log (``refresh``)."""
        try:
            manifest = json.loads((self.vectors_dir / "manifest.json").read_text())
            position = int(manifest["position"])
            files = dict(manifest["workspaces"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        followers = self.catalog.changes.followers()
        if manifest.get("model") != MODEL_ID or RECONCILE_FOLLOWER in followers or \
                position > followers.get(FOLLOWER, (0, 0.0))[0] or \
                position < self.catalog.changes.pruned_through():
            return False
        indexes: dict[str, Any] = {}
        try:
            for ws, name in files.items():
                index = self._new_index()
                index.load(str(self.vectors_dir / name))
                indexes[ws] = index
        except Exception as exc:  # noqa: BLE001 - a damaged cache: rebuild instead
            self._log(f"semantic index files unreadable ({exc!r}): rebuilding from the catalog")
            return False
        key_id: dict[int, str] = {}
        docs: dict[str, list] = {}
        for rows in self.store.iter_keys():
            for id_, ws, seq, key in rows:
                key_id[int(key)] = id_
                docs.setdefault(id_, [ws, int(seq), []])[2].append(int(key))
        self._indexes, self._key_id = indexes, key_id
        self._docs = {i: (d[0], d[1], tuple(d[2])) for i, d in docs.items()}
        self._seq_id = {d[1]: i for i, d in docs.items()}
        self._shown = self._saved = position
        self.refresh()           # what changed since the files were written
        return True

    def load(self) -> None:
        """Load the saved indexes, or (re)build every workspace's from the catalog."""
        with self._mutex:
            if self._load_saved():
                return
            self._build()

    def _build(self) -> None:
        with self._mutex:
            position = self._position()       # read first: later changes are re-applied
            indexes: dict[str, Any] = {}
            key_id: dict[int, str] = {}
            docs: dict[str, list] = {}
            for rows in self.store.iter_all():
                by_ws: dict[str, list] = {}
                for id_, ws, seq, key, vec in rows:
                    by_ws.setdefault(ws, []).append((key, vec))
                    key_id[int(key)] = id_
                    entry = docs.setdefault(id_, [ws, int(seq), []])
                    entry[2].append(int(key))
                for ws, items in by_ws.items():
                    index = indexes.get(ws)
                    if index is None:
                        index = indexes[ws] = self._new_index()
                    keys = np.array([k for k, _ in items], dtype=np.uint64)
                    vecs = np.frombuffer(b"".join(v for _, v in items), dtype=np.float16
                                         ).reshape(len(items), 384)
                    index.add(keys, vecs)
            self._indexes, self._key_id = indexes, key_id
            self._docs = {i: (d[0], d[1], tuple(d[2])) for i, d in docs.items()}
            self._seq_id = {d[1]: i for i, d in docs.items()}
            self._shown = position

    def ensure_loaded(self) -> None:
        if self._shown < 0:
            with self._mutex:            # one load, however many searches wait for it
                if self._shown < 0:
                    self.load()

    def _apply(self, ids: list[str]) -> None:
        """Make the memory show the stored vectors of ``ids`` (none: removed)."""
        with self._mutex:
            for id_ in ids:
                old = self._docs.pop(id_, None)
                if old is not None:
                    self._seq_id.pop(old[1], None)
                if old is not None:
                    index = self._indexes.get(old[0])
                    if index is not None:
                        # every key the id may have had (loaded files can hold more
                        # chunks than the maps read from the catalog now)
                        index.remove(np.array(sorted({*old[2], *(
                            chunk_key(id_, i) for i in range(MAX_CHUNKS))}), dtype=np.uint64))
                    for k in old[2]:
                        self._key_id.pop(k, None)
            fresh: dict[str, list] = {}
            by_ws: dict[str, list] = {}
            for id_, ws, seq, key, vec in self.store.vectors_of(ids):
                by_ws.setdefault(ws, []).append((int(key), vec))
                fresh.setdefault(id_, [ws, int(seq), []])[2].append(int(key))
                self._key_id[int(key)] = id_
            for ws, items in by_ws.items():
                index = self._indexes.get(ws)
                if index is None:
                    index = self._indexes[ws] = self._new_index()
                index.add(np.array([k for k, _ in items], dtype=np.uint64),
                          np.frombuffer(b"".join(v for _, v in items), dtype=np.float16
                                        ).reshape(len(items), 384))
            for id_, (ws, seq, keys) in fresh.items():
                self._docs[id_] = (ws, seq, tuple(keys))
                self._seq_id[seq] = id_

    def refresh(self) -> None:
        """Show what the writer (of any process) has stored since this memory's position."""
        if self._shown < 0:
            self.ensure_loaded()
            return
        position = self._position()
        if position <= self._shown:
            return
        if self.catalog.changes.pruned_through() > self._shown:
            self.load()
            return
        while self._shown < position:
            rows = self.catalog.changes.after(self._shown, 5000)
            rows = [r for r in rows if r[0] <= position]
            if not rows:
                break
            self._apply(list(dict.fromkeys(r[1] for r in rows)))
            self._shown = rows[-1][0]
        self._shown = max(self._shown, position)

    def forget_now(self, ids: list[str]) -> None:
        """Drop ``ids`` from this process's memory at once (a delete of this process)."""
        if self._shown < 0 or not ids:
            return
        with self._mutex:
            for id_ in ids:
                old = self._docs.pop(id_, None)
                if old is not None:
                    self._seq_id.pop(old[1], None)
                if old is not None and old[0] in self._indexes:
                    self._indexes[old[0]].remove(np.array(old[2], dtype=np.uint64))
                    for k in old[2]:
                        self._key_id.pop(k, None)

    # -- writing -------------------------------------------------------------------------
    def _embed_resources(self, ids: list[str]) -> None:
        """Embed and store the current state of ``ids`` (forget the gone ones)."""
        records = self.catalog.resources.get_many(ids)
        gone = [i for i in ids if i not in records]
        self.store.forget(gone)
        stored = self.store.docs([i for i in ids if i in records])
        todo = [records[i] for i in ids if i in records
                and stored.get(i, (None, None, None))[1:] != (records[i].seq, MODEL_ID)]
        if todo:
            texts = self.catalog.resources.extract_texts([r.id for r in todo])
            tok = self.embedder.splitter
            chunks = {r.id: chunk_resource(r, texts.get(r.id, ""), tok) for r in todo}
            flat = [c.text for r in todo for c in chunks[r.id]]
            started = time.monotonic()
            vecs = self.embedder.embed(flat).astype(np.float16)
            emit("semantic.embed", chunks=len(flat), seconds=time.monotonic() - started)
            fault("semantic.after_embed")
            at = 0
            for r in todo:
                parts = []
                for c in chunks[r.id]:
                    parts.append(Chunk(c.start, c.end, vecs[at].tobytes()))
                    at += 1
                self.store.replace(r.id, r.workspace, r.seq, MODEL_ID, parts)
        self._apply(ids)

    def sync(self, progress: Callable[[int, int], None] | None = None,
             until: int | None = None) -> int:
        """Apply the change log past the follower's position (the elected writer only);
        returns how many changes were applied."""
        if not self.leader.try_acquire():
            self.refresh()
            return 0
        try:
            with self._sync_lock:
                # First show what another (perhaps killed) writer stored since this
                # memory's position: it is behind the stored position, never re-read.
                self.refresh()
                followers = self.catalog.changes.followers()
                if FOLLOWER not in followers or RECONCILE_FOLLOWER in followers or \
                        followers[FOLLOWER][0] < self.catalog.changes.pruned_through():
                    return self.reconcile(progress)
                position = followers[FOLLOWER][0]
                done = 0
                while not self.stop_event.is_set():
                    rows = self.catalog.changes.after(position, BATCH_CHANGES)
                    if not rows:
                        break
                    self._embed_resources(list(dict.fromkeys(r[1] for r in rows)))
                    position = rows[-1][0]
                    self.catalog.changes.set_follower(FOLLOWER, position)
                    fault("semantic.after_position")
                    with self._mutex:
                        self._shown = max(self._shown, position)
                    done += len(rows)
                    if until is not None and position >= until:
                        break
                if done and not self.leader.keep:
                    self.save()          # a CLI: the next process loads, not rebuilds
                return done
        finally:
            self.leader.release()

    def reconcile(self, progress: Callable[[int, int], None] | None = None,
                  clear: bool = False) -> int:
        """Embed every resource whose vectors are missing or stale, forget vectors whose
        resource is gone, then follow the log from where it stood at the start."""
        start = self.catalog.changes.head()
        self.catalog.changes.set_follower(RECONCILE_FOLLOWER, start)   # the log is kept from here
        if clear:
            self.store.clear()
            self._build()
        _, orphans = self.store.orphans(limit=10**9)
        self.store.forget(orphans)
        self._apply(orphans)
        total = self.store.pending_all(MODEL_ID)
        done = 0
        after = ""
        while not self.stop_event.is_set():
            ids = self.store.stale_ids(MODEL_ID, after, batch=BATCH_CHANGES)
            if not ids:
                break
            self._embed_resources(ids)
            after = ids[-1]
            done += len(ids)
            if progress is not None:
                progress(done, max(total, done))
        if self.stop_event.is_set():
            return done
        self.catalog.changes.set_follower(FOLLOWER, start)
        self.catalog.changes.drop_follower(RECONCILE_FOLLOWER)
        self._build()     # what earlier, interrupted reconciles stored is shown too
        self._saved = -1
        self.save()
        return done

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed everything (``resources reindex --semantic``)."""
        if not self.leader.try_acquire():
            from storage.errors import IndexBusy
            raise IndexBusy("another process is embedding (a running serve): stop it or "
                            "retry when it is done")
        try:
            with self._sync_lock:
                return self.reconcile(progress, clear=True)
        finally:
            self.leader.release()

    # -- reading -------------------------------------------------------------------------
    def size(self, workspace: str) -> int:
        index = self._indexes.get(workspace)
        return len(index) if index is not None else 0

    def pending(self, workspace: str) -> int:
        """Resources of ``workspace`` not embedded yet (or changed since)."""
        followers = self.catalog.changes.followers()
        if FOLLOWER not in followers or RECONCILE_FOLLOWER in followers:
            return self.store.pending(workspace, MODEL_ID)
        return self.store.pending_after(workspace, MODEL_ID, followers[FOLLOWER][0])

    def current(self, ids: list[str], workspace: str) -> set[str]:
        """Of ``ids``, those whose record exists in ``workspace`` with the seq its
        vectors were made from (deleted or replaced since: left out)."""
        seqs = self.store.record_seqs(ids)
        return {i for i, (ws, seq) in seqs.items()
                if ws == workspace and seq == self.doc_seq(i)}

    def nearest_chunks(self, workspace: str, qvec: np.ndarray, count: int,
                       exact: bool = False) -> list[tuple[str, int, float]]:
        """(id, key, similarity) of the ``count`` nearest chunks, best first."""
        with self._mutex:
            index = self._indexes.get(workspace)
            if index is None or len(index) == 0 or count <= 0:
                return []
            matches = index.search(qvec.astype(np.float32), min(count, len(index)),
                                   exact=exact)
            out = []
            for key, dist in zip(matches.keys, matches.distances):
                id_ = self._key_id.get(int(key))
                if id_ is not None:
                    out.append((id_, int(key), 1.0 - float(dist)))
            return out

    def scan(self, ids: list[str], qvec: np.ndarray) -> list[tuple[str, int, float]]:
        """Exact: the best chunk of each of ``ids`` (embedded ones), best first."""
        q = qvec.astype(np.float32)
        out: list[tuple[str, int, float]] = []
        with self._mutex:
            by_ws: dict[str, list[str]] = {}
            for id_ in ids:
                doc = self._docs.get(id_)
                if doc is not None:
                    by_ws.setdefault(doc[0], []).append(id_)
            for ws, docs in by_ws.items():
                chunks = [self._docs[i][2] for i in docs]
                keys = np.fromiter((k for c in chunks for k in c), dtype=np.uint64)
                starts = np.cumsum([0] + [len(c) for c in chunks[:-1]])
                vecs = np.asarray(self._indexes[ws].get(keys), dtype=np.float32
                                  ).reshape(len(keys), -1)
                sims = vecs @ q
                best = np.maximum.reduceat(sims, starts)         # each doc's best chunk
                for d in np.argsort(-best, kind="stable").tolist():
                    lo = int(starts[d])
                    seg = sims[lo:lo + len(chunks[d])]
                    out.append((docs[d], int(keys[lo + int(seg.argmax())]), float(best[d])))
        if len(by_ws) > 1:
            out.sort(key=lambda r: -r[2])
        return out

    def ids_for_seqs(self, seqs: list[int]) -> list[str]:
        """The documents (in memory) whose vectors were made from these record seqs."""
        get = self._seq_id.get
        return [i for i in map(get, seqs) if i is not None]

    def doc_seq(self, id_: str) -> int | None:
        doc = self._docs.get(id_)
        return doc[1] if doc else None

    def snippets(self, chunks: dict[str, tuple[int, str]]) -> dict[str, str]:
        """id -> the escaped start of its best chunk, from (chunk key, indexed text)."""
        spans = self.store.spans([k for k, _ in chunks.values()])
        out = {}
        for id_, (key, text) in chunks.items():
            if key in spans:
                _, start, end = spans[key]
                out[id_] = html.escape(text[start:min(end, start + SNIPPET_CHARS)])
        return out

    def status(self) -> dict[str, Any]:
        followers = self.catalog.changes.followers()
        position = followers.get(FOLLOWER, (0, 0.0))[0]
        docs, chunks = self.store.counts()
        return {"position": position, "behind": max(self.catalog.changes.head() - position, 0),
                "documents": docs, "chunks": chunks, "writer": self.leader.held}

"""ResourceService: the facade the faces (HTTP routes, CLI, web, Breyta) call.

It composes the parts, each taking what it needs explicitly: ``PersistPipeline``
(persist.py), ``Queries`` (queries.py: get, read, search, list, paging), ``Overrides``,
``Retention`` (gc, run cleanup, KV refs, usage), the KV and key stores, quotas. The
methods here are one line each, except slots, the write wait (``_index_now``) and
health. Every operation takes the workspace it acts for; a resource of another
workspace is reported exactly like a missing one (NotFound), so no caller can probe it.

``open()`` is the explicit start: recovery of what a crash left, index catch-up and an
interrupted gc. The constructor runs it unless told not to (``doctor`` reports first).
"""
from __future__ import annotations

import sys
import threading
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from indexer.index import SearchIndex
from indexer.partitions import PartitionPolicy
from indexer.pdf import PdfWorker
from storage.config import DEFAULT_CONNECTION
from storage import clock
from storage.backend import StorageBackend
from storage.catalog import Catalog
from storage.config import Settings
from storage.connections import build_backends
from storage.errors import IndexBusy, InvalidSpec, NotEnabled
from storage.kv import KvEntry, KvStore
from storage.layout import check_root, check_slot_name, check_workspace
from storage.lifecycle import Lifecycle, commit_lock_for
from storage.quotas import QuotaStore
from storage.records import Resource, SearchIndexOverrides, Slot
from storage.spec import PersistSpec

from .auth import KeyStore
from .cluster import Cluster
from .overrides import Overrides
from .persist import KV_PERSIST_MAX_BYTES, PersistJob, PersistPipeline, PersistResult
from .picker import PickerMixin
from .queries import Page, Queries
from .retention import Retention
from .signing import Signer, parse_ttl, service_secret
from .uploads import UploadsMixin
from .views import ViewsMixin

__all__ = ["KV_PERSIST_MAX_BYTES", "Page", "PersistJob", "PersistResult", "ResourceService"]


class ResourceService(ViewsMixin, UploadsMixin, PickerMixin):
    def __init__(self, settings: Settings, log: Callable[[str], None] | None = None,
                 recover: bool = True, wait_default: bool = True) -> None:
        self.settings = settings
        #: Whether a write returns only once this process's index shows it. True for the
        #: library and the embedded CLI (persist, then search, finds it); `serve`
        #: acknowledges at durability instead and indexes in its follower thread
        #: (`wait-for=indexed` per request). See docs/write-path.md.
        self.wait_default = wait_default
        #: The background index follower, when one runs in this process (serve).
        self.follower: Any = None
        #: The embedding follower of `serve` (indexer.semantic), when one runs here.
        self.semantic_follower: Any = None
        self._semantic: Any = None
        self._semantic_lock = threading.Lock()
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        settings.home.mkdir(parents=True, exist_ok=True)
        self._batch_depth = 0
        self._batch_lock = threading.Lock()
        self.catalog = Catalog(settings.catalog_location)
        self.backends: dict[str, StorageBackend] = build_backends(settings)
        self.lifecycle = Lifecycle(self.catalog, self.backends,
                                   commit_lock_for(self.catalog,
                                                   settings.home / "locks" / "commit.lock"),
                                   self.now, self.log)
        self.index = SearchIndex(settings.index_dir, self.catalog,
                                 settings.index_lock_wait_seconds, self.log,
                                 PartitionPolicy(settings.index_partition_min_docs,
                                                 settings.index_partition_workspaces,
                                                 settings.index_partition_max))
        self.pdf = PdfWorker()
        self.keys = KeyStore(self.catalog)
        self.kv = KvStore(self.catalog, self.now)
        self.quotas = QuotaStore(settings.home / "quotas.json", self.catalog,
                                 tuple(settings.tiers))
        self.lifecycle.admit = self.quotas.admit      # refuses a persist over a quota
        self.signer = Signer(service_secret(settings, self.catalog))
        self.cluster = Cluster(self)      # this node among those sharing the catalog
        # The parts read the time through the service, so a caller (a test, a tool) that
        # sets ``service.now`` moves every part's clock with it.
        clock: Callable[[], float] = lambda: self.now()
        self.persister = PersistPipeline(settings, self.catalog, self.backends, self.lifecycle,
                                         self.pdf, self._slot, self._index_now, clock)
        self.queries = Queries(self.catalog, self.backends, self.index, self.signer,
                               self._slot, clock,
                               self._semantic_ready if settings.semantic else None)
        self.overrides = Overrides(self.catalog, self.lifecycle, self.get, self._index_now,
                                   clock)
        self.retention = Retention(settings, self.catalog, self.lifecycle, self.kv, self.get,
                                   self._index_now, clock)
        if recover:
            self.open()

    def open(self) -> None:
        """Finish what a crashed process left: intents rolled back or forward, the index
        caught up with the change log, an interrupted gc sweep finished."""
        self.lifecycle.recover()
        self.index.try_sync()
        if any(kind == "gc" for _, kind, _ in self.catalog.intents.pending()):
            self.gc()

    def close(self) -> None:
        self.pdf.close()
        thumbs = getattr(self, "_thumbnailer", None)     # made on first use (views.py)
        if thumbs is not None:
            thumbs.close()
        self.catalog.close()

    @staticmethod
    def now() -> float:
        return clock.now()

    # -- slots ---------------------------------------------------------------------------
    def bind_slot(self, workspace: str, name: str, root: str,
                  connection: str = DEFAULT_CONNECTION) -> Slot:
        check_workspace(workspace)
        check_slot_name(name)
        if connection not in self.backends:
            raise InvalidSpec(f"unknown connection {connection!r} (known: {', '.join(self.backends)})")
        now = self.now()
        return self.catalog.slots.put(Slot(workspace, name, connection, check_root(root), now, now))

    def list_slots(self, workspace: str) -> list[Slot]:
        return self.catalog.slots.list(check_workspace(workspace))

    def slot_json(self, slot: Slot) -> dict:
        return slot.to_json(self.backends[slot.connection].family)

    def _slot(self, workspace: str, name: str) -> Slot:
        slot = self.catalog.slots.get(workspace, name)
        if slot is None:
            raise InvalidSpec(f"slot {name!r} is not bound in workspace {workspace!r} "
                              f"(bind it with: resources slots bind {name} --root ROOT)")
        return slot

    # -- persist (persist.py) -------------------------------------------------------------
    def begin_persist(self, workspace: str, spec: PersistSpec | dict | str | None,
                      idempotency_key: str | None = None, adopt: bool = False) -> PersistJob:
        return self.persister.begin(workspace, spec, idempotency_key, adopt)

    def persist(self, workspace: str, spec: PersistSpec | dict | str | None,
                body: BinaryIO | Iterable[bytes] | bytes,
                idempotency_key: str | None = None, wait: bool | None = None) -> PersistResult:
        return self.persister.persist(workspace, spec, body, idempotency_key, wait)

    def adopt(self, workspace: str, spec: PersistSpec | dict | str | None,
              wait: bool | None = None) -> PersistResult:
        return self.persister.adopt(workspace, spec, wait)

    def persist_many(self, workspace: str,
                     items: Iterable[tuple[PersistSpec | dict | str | None,
                                           BinaryIO | Iterable[bytes] | bytes]],
                     group: int = 256) -> list[PersistResult]:
        return self.persister.persist_many(workspace, items, group)

    # -- batching (bulk ingest) ----------------------------------------------------------
    def _index_now(self, wait: bool | None = None) -> None:
        """After a write of this thread: wait until the index shows it, or hand it to the
        follower. An explicit ``wait=True`` that times out raises IndexBusy (the change
        is saved); the default wait of the library/CLI only notes it."""
        if self._batch_depth:
            return
        explicit = wait is not None
        if self.semantic_follower is not None:
            self.semantic_follower.nudge()      # embeds in the background, never here
        if not (self.wait_default if wait is None else wait):
            if self.follower is not None:
                self.follower.nudge()
            return
        position = self.catalog.changes.last_position()
        try:
            shown = self.index.wait_for(position, self.settings.index_lock_wait_seconds)
            problem = None if shown else (
                f"not searchable within {self.settings.index_lock_wait_seconds:g} s")
        except IndexBusy as exc:
            problem = exc.message
        if problem is None and wait == "all" and not self.cluster.wait_all(
                position, self.settings.index_lock_wait_seconds):
            problem = f"not searchable on every node within " \
                      f"{self.settings.index_lock_wait_seconds:g} s"
        if problem is None:
            return
        message = (f"the change is saved but {problem}; the index follows the change log "
                   f"and will show it")
        if explicit:
            raise IndexBusy(message)
        self.log(f"note: {message}")

    class _Batch:
        def __init__(self, svc: "ResourceService") -> None:
            self.svc = svc

        def __enter__(self) -> None:
            with self.svc._batch_lock:
                self.svc._batch_depth += 1

        def __exit__(self, *exc: object) -> None:
            with self.svc._batch_lock:
                self.svc._batch_depth -= 1
            if self.svc._batch_depth == 0:
                self.svc.index.try_sync()

    def batch(self) -> "ResourceService._Batch":
        """Defer index commits to the end of the block (bulk loads): one commit, not N."""
        return ResourceService._Batch(self)

    # -- reads (queries.py) ---------------------------------------------------------------
    def get(self, workspace: str, uri: str) -> Resource:
        return self.queries.get(workspace, uri)

    def get_by_id(self, workspace: str, id_: str) -> Resource:
        return self.queries.get_by_id(workspace, id_)

    def read(self, workspace: str, uri: str, byte_range: tuple[int | None, int | None] | None = None
             ) -> tuple[Resource, int, int, Iterator[bytes]]:
        return self.queries.read(workspace, uri, byte_range)

    def search(self, workspace: str, q: str | None, params: dict[str, Any] | None = None,
               limit: Any = None, cursor: str | None = None, keyword_mode: str = "all",
               offset: int | None = None, mode: str | None = None) -> Page:
        return self.queries.search(workspace, q, params, limit, cursor, keyword_mode, offset,
                                   mode)

    # -- semantic search (indexer/semantic.py, meaning.py) ----------------------------
    @property
    def semantic(self) -> Any:
        """The embedding index of this process (made on first use)."""
        if not self.settings.semantic:
            raise NotEnabled("semantic search is turned off here (RESOURCES_SEMANTIC=off)")
        if self._semantic is None:
            with self._semantic_lock:
                if self._semantic is None:
                    from indexer.semantic import SemanticIndex
                    self._semantic = SemanticIndex(self.catalog, self.settings.home, self.log)
        return self._semantic

    def _semantic_ready(self) -> Any:
        """The embedding index for a search: the library and embedded CLI (no background
        follower) catch up first; `serve` embeds in the background and only loads."""
        sem = self.semantic
        if self.follower is None and self.semantic_follower is None:
            sem.sync()
        else:
            sem.ensure_loaded()
        return sem

    def start_semantic_follower(self, lead: bool = True) -> Any:
        """Start embedding in the background (serve); None when semantic search is off
        or the model is not installed (then semantic searches answer 501)."""
        if not self.settings.semantic:
            return None
        from indexer.embed import ModelMissing, model_dir
        from indexer.semantic_follower import SemanticFollower
        try:
            model_dir()
        except ModelMissing as exc:
            self.log(f"semantic search unavailable: {exc}")
            return None
        self.semantic_follower = SemanticFollower(self.semantic, lead=lead, log=self.log).start()
        return self.semantic_follower

    def list(self, workspace: str, params: dict[str, Any] | None = None, limit: Any = None,
             cursor: str | None = None) -> Page:
        return self.queries.list(workspace, params, limit, cursor)

    def workflow_resources(self, workspace: str, workflow_id: str, step: str | None = None,
                           limit: Any = None, cursor: str | None = None) -> Page:
        return self.queries.workflow_resources(workspace, workflow_id, step, limit, cursor)

    def index_position(self) -> dict[str, Any]:
        return self.queries.index_position()

    # -- delete --------------------------------------------------------------------------
    def delete(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        res = self.get(workspace, uri)
        self.lifecycle.delete([res])
        if self._semantic is not None:
            self._semantic.forget_now([res.id])    # this process's vectors, at once
        self._index_now(wait)
        return res

    # -- search-index overrides (overrides.py) ------------------------------------------
    def show_overrides(self, workspace: str, uri: str) -> Resource:
        return self.overrides.show(workspace, uri)

    def update_overrides(self, workspace: str, uri: str, changes: dict | SearchIndexOverrides,
                         replace: bool = False, wait: bool | None = None) -> Resource:
        return self.overrides.update(workspace, uri, changes, replace, wait)

    def clear_overrides(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        return self.overrides.clear(workspace, uri, wait)

    # -- signed URLs ---------------------------------------------------------------------
    def signed_url(self, workspace: str, uri: str, ttl: Any = None) -> tuple[str, float]:
        """(path of the signed link, expiry). The resource must exist now."""
        ttl = parse_ttl(ttl)
        res = self.get(workspace, uri)
        expires = int(self.now()) + ttl
        return f"/signed/{self.signer.sign(workspace, res.uri, expires)}", float(expires)

    def resolve_signed(self, token: str) -> tuple[str, str]:
        return self.signer.verify(token, self.now())

    # -- retention (retention.py) -------------------------------------------------------
    def delete_workflow(self, workspace: str, workflow_id: str, tier: str | None = None,
                        dry_run: bool = False, wait: bool | None = None) -> list[Resource]:
        return self.retention.delete_workflow(workspace, workflow_id, tier, dry_run, wait)

    def resolve_refs(self, workspace: str, entry: KvEntry) -> dict[str, Any]:
        return self.retention.resolve_refs(workspace, entry)

    def dangling_refs(self) -> list[dict[str, str]]:
        return self.retention.dangling_refs()

    def expired(self) -> list[Resource]:
        return self.retention.expired()

    def gc(self, dry_run: bool = False) -> dict[str, Any]:
        return self.retention.gc(dry_run)

    def usage(self, workspace: str | None = None) -> dict[str, Any]:
        return self.retention.usage(workspace)

    # -- health and maintenance --------------------------------------------------------
    def health(self) -> dict[str, Any]:
        status: dict[str, Any] = {}
        try:
            self.catalog.ping()
            status["catalog"] = {"ok": True, "schema-version": self.catalog.schema_version(),
                                 "index-backlog": self.catalog.changes.backlog()}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            status["catalog"] = {"ok": False, "error": str(exc)}
        try:
            status["index"] = {"ok": True, "documents": self.index.count(),
                               **self.index.status()}
        except BaseException as exc:  # noqa: BLE001 - tantivy may panic
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            status["index"] = {"ok": False, "error": str(exc)[:200]}
        status["ok"] = status["catalog"]["ok"] and status["index"]["ok"]
        return status

    # -- maintenance ---------------------------------------------------------------------
    def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        count = self.index.rebuild(progress)
        self.index.try_sync()
        return count

    # -- watch ---------------------------------------------------------------------------
    def forget_location(self, connection: str, key: str) -> Resource | None:
        """Another program removed the blob at ``key``: drop its record and index entry.
        Nothing happens when no record lives there or the file is back (no data loss)."""
        with self.lifecycle.lock.held():
            res = self.catalog.resources.by_location(connection, key)
            if res is None:
                return None
            try:
                self.backends[connection].stat(key)
                return None          # recreated meanwhile: the watcher re-registers it
            except FileNotFoundError:
                pass
            self.lifecycle.delete([res])
        self._index_now()
        return res

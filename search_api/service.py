"""ResourceService: the one core layer. The CLI and the HTTP routes only call this.

Every operation takes the workspace it acts for; a resource of another workspace is
reported exactly like a missing one (NotFound), so no caller can probe for it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from indexer.extract import extract
from indexer.facets import parse_facet_size, parse_facets
from indexer.index import SearchIndex
from indexer.pdf import PdfWorker
from indexer.query import (MAX_RESULT_WINDOW, Filters, check_window, decode_cursor, encode_cursor,
                           fingerprint, parse_flag, parse_limit, parse_text)
from indexer.detect import guess_content_type, sniff
from indexer.schema import effective_content
from storage import clock
from storage.backend import BlobWriter, StorageBackend
from storage.catalog import Catalog
from storage.config import Settings
from storage.events import emit
from storage.faults import fault
from storage.errors import (IdempotencyConflict, IndexBusy, InvalidSpec, NotFound,
                            RangeNotSatisfiable)
from storage.layout import (check_key_length, check_root, check_slot_name, check_workspace,
                            optional_segments, render, slotted_key, split_segments,
                            unslotted_key)
from storage.lifecycle import Lifecycle, commit_lock_for
from storage.connections import build_backends
from storage.records import (Extraction, Resource, SearchIndexOverrides, Slot, new_id,
                             parse_uri)
from storage.kv import KvEntry, KvStore, find_uris
from storage.quotas import QuotaStore
from storage.spec import PersistSpec, parse_overrides, parse_spec

from .auth import KeyStore
from .cluster import Cluster
from .signing import Signer, parse_ttl, service_secret
from .picker import PickerMixin
from .uploads import UploadsMixin
from .views import ViewsMixin

CHUNK = 1024 * 1024
#: Largest body of a ``type: kv`` persist (a workflow result as one JSON value).
KV_PERSIST_MAX_BYTES = 16 * 1024 * 1024


@dataclass
class Page:
    items: list[Resource]
    total: int
    limit: int
    next_cursor: str | None
    scores: dict[str, float] = field(default_factory=dict)
    snippets: dict[str, str] = field(default_factory=dict)
    mode: str | None = None
    total_relation: str = "eq"            # "gte": total is a lower bound (the threshold)
    facets: dict[str, Any] | None = None  # indexer.facets.read_aggregation's shape
    #: Where the index that answered stands in the change log (position, lag).
    index: dict[str, Any] | None = None


@dataclass
class PersistResult:
    resource: Resource
    created: bool          # False for a slot rewrite or an idempotent replay
    replayed: bool = False


def derived_source_label(flow: str | None, step: str | None) -> str:
    if flow or step:
        return f"{flow or '_'}/{step or '_'}"
    return "upload"


class PersistJob:
    """A persist in progress: bytes streamed in with ``write``, then ``commit``.

    Everything that can be rejected from the spec alone was rejected before this object
    exists; the body is never held in memory.
    """

    def __init__(self, service: "ResourceService", workspace: str, spec: PersistSpec,
                 writer: BlobWriter, backend: StorageBackend, connection: str,
                 key: str, slot: Slot | None, path_under_root: str | None,
                 filename: str, idempotency_key: str | None) -> None:
        self.service = service
        self.workspace = workspace
        self.spec = spec
        self.writer = writer
        self.backend = backend
        self.connection = connection
        self.key = key
        self.slot = slot
        self.path_under_root = path_under_root
        self.filename = filename
        self.idempotency_key = idempotency_key
        self._closed = False

    def write(self, chunk: bytes) -> None:
        try:
            self.writer.write(chunk)
            fault("persist.streaming")
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._closed = True
        self.writer.abort()

    def commit(self, wait: bool | None = None) -> PersistResult:
        """Publish the staged bytes and the record. ``wait``: also wait until this
        process's searches show it (None: the service's ``wait_default``)."""
        try:
            return self.service._commit(self, wait)
        except BaseException:
            self.abort()
            raise
        finally:
            self._closed = True


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
        if recover:      # doctor opts out: it reports what a crash left, --repair fixes it
            self.lifecycle.recover()
        self.index = SearchIndex(settings.index_dir, self.catalog,
                                 settings.index_lock_wait_seconds, self.log)
        self.pdf = PdfWorker()
        self.keys = KeyStore(self.catalog)
        self.kv = KvStore(self.catalog, self.now)
        self.quotas = QuotaStore(settings.home / "quotas.json", self.catalog,
                                 tuple(settings.tiers))
        self.lifecycle.admit = self.quotas.admit      # refuses a persist over a quota
        self.signer = Signer(service_secret(settings, self.catalog))
        self.cluster = Cluster(self)      # this node among those sharing the catalog
        self.index.try_sync()   # catch up with what a crashed or other process left
        if any(kind == "gc" for _, kind, _ in self.catalog.intents.pending()):
            self.gc()           # a sweep a crash interrupted: finish it

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
                  connection: str = "platform") -> Slot:
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

    # -- persist -------------------------------------------------------------------------
    def adopt(self, workspace: str, spec: PersistSpec | dict | str | None,
              wait: bool | None = None) -> PersistResult:
        """Register the file already lying at the spec's slot location (``watch``):
        the same record, index entry and crash safety as a persist, but the bytes are
        read where they are, never rewritten, so a program writing there loses nothing."""
        return self.begin_persist(workspace, spec, adopt=True).commit(wait)

    def begin_persist(self, workspace: str, spec: PersistSpec | dict | str | None,
                      idempotency_key: str | None = None, adopt: bool = False) -> PersistJob:
        """Validate everything knowable before the body, then open the write stream."""
        check_workspace(workspace)
        spec = spec if isinstance(spec, PersistSpec) else parse_spec(spec)
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
            raise InvalidSpec("Idempotency-Key must be 1 to 255 characters")
        tier = self.settings.tiers[spec.tier]
        runtime = {"workspace-id": workspace, "flow-slug": spec.flow, "step-id": spec.step}
        path_segments = optional_segments(
            render(spec.path, spec.params, runtime, "path") if spec.path else None, "path")
        raw_filename = spec.filename or ("result.json" if spec.type == "kv" else "blob")
        filename_segments = split_segments(render(raw_filename, spec.params, runtime, "filename"),
                                           "filename")
        slot = None
        if spec.slot:
            slot = self._slot(workspace, spec.slot)
            connection = slot.connection
            key, under = slotted_key(workspace, slot.root, path_segments, filename_segments)
        else:
            connection = "platform"
            key = unslotted_key(workspace, spec.flow, spec.step, path_segments, filename_segments)
            under = None
        check_key_length(key)
        backend = self.backends[connection]
        if adopt:
            if slot is None or not backend.can_adopt:
                raise InvalidSpec("only a file in a slot folder of a local connection can be adopted")
            try:
                writer = backend.adopt(key, tier.max_bytes)
            except FileNotFoundError:
                raise NotFound("no file at that slot location") from None
        else:
            # Collisions (a file where a folder must go, a folder at the key) and paths
            # past the OS limits are refused here, before any byte or intent exists.
            backend.check_target(key)
            # A kv body is parsed whole to check it is one JSON value, so its size is
            # bounded well below the tier limit (parsing costs ~3x the body in memory).
            limit = min(tier.max_bytes, KV_PERSIST_MAX_BYTES) if spec.type == "kv" \
                else tier.max_bytes
            writer = backend.open_write(key, limit)   # the backend re-checks the key
        return PersistJob(self, workspace, spec, writer, backend, connection, key, slot, under,
                          filename_segments[-1], idempotency_key)

    def persist(self, workspace: str, spec: PersistSpec | dict | str | None,
                body: BinaryIO | Iterable[bytes] | bytes,
                idempotency_key: str | None = None, wait: bool | None = None) -> PersistResult:
        job = self.begin_persist(workspace, spec, idempotency_key)
        try:
            for chunk in _chunks(body):
                job.write(chunk)
        except BaseException:
            job.abort()
            raise
        return job.commit(wait)

    def _commit(self, job: PersistJob, wait: bool | None = None) -> PersistResult:
        prepared = self._prepare(job)
        if isinstance(prepared, PersistResult):
            return prepared
        writer, res, text, idem = prepared
        # Group-committed with concurrent persists; a concurrent retry with the same
        # idempotency key that committed since the check in _prepare is found again
        # under the commit lock, so only one writes.
        res, created, replayed = self.lifecycle.commit_persist(writer, res, text, idem)
        if replayed:
            writer.abort()
            return PersistResult(res, created=False, replayed=True)
        self._index_now(wait)
        return PersistResult(res, created=created)

    def _prepare(self, job: PersistJob, durable: bool = True
                 ) -> PersistResult | tuple[BlobWriter, Resource, str, tuple | None]:
        """Everything between the last byte and publishing: finish the staged file,
        check a kv body, detect the type, settle idempotency, extract, build the record.
        Returns a PersistResult for an idempotent replay."""
        spec, writer = job.spec, job.writer
        writer.finish(durable)
        fault("persist.after_fsync")
        staged = writer.staged_path()
        head = writer.read_staged(2048)
        detected = sniff(head)            # once: libmagic is the costly part
        if spec.type == "kv":
            _check_json(staged)
            content_type = "application/json"
        else:
            content_type = guess_content_type(head, job.filename, spec.content_type, detected)
        request_hash = None
        if job.idempotency_key:
            request_hash = hashlib.sha256(
                f"{spec.canonical()}\n{writer.sha256}".encode()).hexdigest()
            replay = self._idempotent_replay(job.workspace, job.idempotency_key, request_hash)
            if replay is not None:
                writer.abort()
                return PersistResult(replay, created=False, replayed=True)
        s = self.settings
        extracted = extract(staged, writer.size, content_type, s.extract_max_read,
                            s.extract_max_chars, self.pdf, s.pdf_max_pages,
                            s.pdf_timeout_seconds, detected) if staged else None
        text = extracted.text if extracted else ""
        fault("persist.after_extract")
        outcome = extracted.outcome if extracted else Extraction()
        now = self.now()
        tier = s.tiers[spec.tier]
        ttl = min(spec.ttl_seconds or tier.retention_seconds, tier.retention_seconds)
        overrides = spec.search_index
        res = Resource(
            # An upload's uri is chosen at its init: the job then carries its id.
            id=getattr(job, "resource_id", None) or new_id(), workspace=job.workspace,
            type=spec.resource_type, tier=spec.tier,
            display_name=spec.display_name or job.filename, filename=job.filename,
            content_type=content_type, size=writer.size, sha256=writer.sha256,
            storage_backend=job.backend.family, connection=job.connection,
            storage_root=job.slot.root if job.slot else None,
            path_under_root=job.path_under_root, path=job.key,
            slot=job.slot.name if job.slot else None, flow=spec.flow, step=spec.step,
            workflow_id=spec.workflow_id, tags=list(spec.tags),
            source_label=overrides.source_label or derived_source_label(spec.flow, spec.step),
            created_at=now, updated_at=now, expires_at=now + ttl, version=1,
            content_indexed=False, content_truncated=outcome.truncated,
            extraction=outcome, search_index=overrides)
        res.content_indexed = effective_content(res, text)[1]
        idem = (job.workspace, job.idempotency_key, request_hash) if request_hash else None
        return writer, res, text, idem

    def persist_many(self, workspace: str,
                     items: Iterable[tuple[PersistSpec | dict | str | None,
                                           BinaryIO | Iterable[bytes] | bytes]],
                     group: int = 256) -> list[PersistResult]:
        """Bulk persist: same validation, records and crash safety as ``persist``, but
        per group one durability barrier, one intent and one record transaction and one
        index commit, instead of per resource. No idempotency keys here."""
        results: list[PersistResult] = []
        pending: list[tuple[PersistJob, tuple]] = []

        def flush() -> None:
            if not pending:
                return
            try:
                by_backend: dict[int, list] = {}
                for job, (writer, res, text, _) in pending:
                    by_backend.setdefault(id(job.backend), [job.backend, []])[1].append(
                        (writer, res, text))
                for backend, batch in by_backend.values():
                    backend.sync_barrier()          # staged bytes durable before intents
                    for res, created in self.lifecycle.publish_many(batch, backend):
                        results.append(PersistResult(res, created=created))
            finally:
                for job, _ in pending:
                    job.abort()                      # no-op for published writers
                pending.clear()

        # Bodies stream in on this thread; detection and extraction (libmagic runs
        # without the GIL) overlap on a small pool, in order.
        futures: list[tuple[PersistJob, Future]] = []

        def drain(keep: int) -> None:
            while len(futures) > keep:
                job, fut = futures.pop(0)
                prepared = fut.result()
                assert not isinstance(prepared, PersistResult)
                pending.append((job, prepared))
                if len(pending) >= group:
                    flush()

        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            try:
                for spec, body in items:
                    job = self.begin_persist(workspace, spec)
                    futures.append((job, pool.submit(_fill_and_prepare, self, job, body)))
                    drain(keep=8)
                drain(keep=0)
                flush()
            finally:
                for job, fut in futures:
                    fut.cancel()
                for job, fut in futures:
                    try:
                        fut.result()
                    except BaseException:
                        pass
                    job.abort()
                for job, _ in pending:
                    job.abort()
                self._index_now()
        return results

    def _idempotent_replay(self, workspace: str, key: str, request_hash: str) -> Resource | None:
        found = self.catalog.idempotency.get(workspace, key)
        if found is None:
            return None
        stored_hash, resource_id = found
        if stored_hash != request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used with a different body or spec")
        res = self.catalog.resources.get(resource_id)
        return res   # None when deleted since: the retry then writes anew

    # -- batching (bulk ingest) ----------------------------------------------------------
    def _index_now(self, wait: bool | None = None) -> None:
        """After a write of this thread: wait until the index shows it, or hand it to the
        follower. An explicit ``wait=True`` that times out raises IndexBusy (the change
        is saved); the default wait of the library/CLI only notes it."""
        if self._batch_depth:
            return
        explicit = wait is not None
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

    # -- read ----------------------------------------------------------------------------
    def get(self, workspace: str, uri: str) -> Resource:
        ws, type_, id_ = parse_uri(uri)
        res = self.catalog.resources.get(id_)
        if (res is None or ws != workspace or res.workspace != workspace or res.type != type_
                or (res.expires_at is not None and res.expires_at <= self.now())):
            raise NotFound("resource not found")
        return res

    def get_by_id(self, workspace: str, id_: str) -> Resource:
        res = self.catalog.resources.get(id_)
        if res is None or res.workspace != workspace:
            raise NotFound("resource not found")
        return self.get(workspace, res.uri)

    def read(self, workspace: str, uri: str, byte_range: tuple[int | None, int | None] | None = None
             ) -> tuple[Resource, int, int, Iterator[bytes]]:
        """(record, start, end, chunks); ``end`` inclusive. Raises RangeNotSatisfiable."""
        res = self.get(workspace, uri)
        start, end = 0, res.size - 1
        if byte_range is not None:
            first, last = byte_range
            if first is None:                     # suffix range: last N bytes
                if not last:
                    raise RangeNotSatisfiable(f"range not satisfiable for {res.size} bytes",
                                              size=res.size)
                start, end = max(res.size - last, 0), res.size - 1
            else:
                start = first
                end = min(last if last is not None else res.size - 1, res.size - 1)
            if start >= res.size or start > end:
                raise RangeNotSatisfiable(f"range not satisfiable for {res.size} bytes",
                                          size=res.size)
        if res.size == 0:
            return res, 0, -1, iter(())
        try:
            chunks = self.backends[res.connection].open_read(res.path, start, end)
        except FileNotFoundError:
            raise NotFound("resource content is missing (run `resources doctor`)") from None
        return res, start, end, chunks

    # -- search and list -----------------------------------------------------------------
    def search(self, workspace: str, q: str | None, params: dict[str, Any] | None = None,
               limit: Any = None, cursor: str | None = None, keyword_mode: str = "all",
               offset: int | None = None) -> Page:
        """One page of a search (``q``) or of a newest-first list (no ``q``).

        Besides the filters, ``params`` may hold ``exact-total`` (count past the
        threshold; default no: beyond 10,000 the total is a lower bound with
        ``total_relation`` "gte"), ``facets`` (names or ``all``: counts per value in one
        aggregation, ``Page.facets``) and ``facet-size``. None of them changes which
        items come back, so cursors do not depend on them."""
        check_workspace(workspace)
        params = params or {}
        filters = Filters.from_params(params)
        exact_total = parse_flag(params.get("exact-total"), "exact-total")
        facet_names = parse_facets(params.get("facets"))
        facet_size = parse_facet_size(params.get("facet-size"))
        if filters.slot:
            slot = self._slot(workspace, filters.slot)
            filters.storage_backend = self.backends[slot.connection].family
            filters.storage_root = slot.root
        limit = parse_limit(limit)
        text_query = parse_text(self.index._current(), q or "", keyword_mode)
        # newest without words pages by keyset (stable under inserts), relevance by
        # score; every other order is a fast field, paged by offset.
        sort = filters.sort or ("relevance" if text_query is not None else "newest")
        if sort == "relevance" and text_query is None:
            sort = "newest"
        order = {"newest": "newest" if text_query is None else "by-field",
                 "relevance": "score"}.get(sort, "by-field")
        order_by = _SORT_FIELDS[sort] if order == "by-field" else None
        fp = fingerprint(workspace, q or "", filters, keyword_mode, order)
        decoded = decode_cursor(cursor, fp, self.signer.cursor_secret)
        start = offset or 0
        before_seq = None
        if decoded:
            kind, value = decoded
            if kind == "off":
                start = value
            else:
                before_seq = value
        if order == "newest" and offset:
            raise InvalidSpec("offset paging applies to ranked search; use the cursor")
        if order != "newest":
            check_window(start, limit)
        now = int(self.now())
        # One searcher (one commit) for the page and its facets: the counts agree with it.
        searcher = self.index.searcher()
        page = self.index.search(workspace, text_query, filters, now, limit,
                                 offset=start, before_seq=before_seq, exact_total=exact_total,
                                 searcher=searcher, order_by=order_by)
        # One catalog query for the page's records; snippets were made for these hits only.
        records = self.catalog.resources.get_many([h.id for h in page.hits])
        items = [records[h.id] for h in page.hits if h.id in records]
        next_cursor = None
        # An offset page at the end of the ranked window offers no next page: its cursor
        # could only be refused (MAX_RESULT_WINDOW).
        if page.more and (order == "newest" or start + 2 * limit <= MAX_RESULT_WINDOW):
            secret = self.signer.cursor_secret
            next_cursor = (encode_cursor("seq", page.hits[-1].seq, fp, secret)
                           if order == "newest" else
                           encode_cursor("off", start + limit, fp, secret))
        facets = None
        if facet_names:
            facets = self.index.facets(workspace, text_query, filters, now, facet_names,
                                       facet_size, searcher=searcher)
        return Page(items, page.total, limit, next_cursor,
                    scores={h.id: h.score for h in page.hits},
                    snippets={h.id: h.snippet for h in page.hits},
                    total_relation=page.relation, facets=facets,
                    index=self.index_position())

    def list(self, workspace: str, params: dict[str, Any] | None = None, limit: Any = None,
             cursor: str | None = None) -> Page:
        """Newest first (most recently written first), same filters, no text query."""
        return self.search(workspace, None, params, limit, cursor)

    def workflow_resources(self, workspace: str, workflow_id: str, step: str | None = None,
                           limit: Any = None, cursor: str | None = None) -> Page:
        params: dict[str, Any] = {"workflow-id": workflow_id}
        if step:
            params["step"] = step
        return self.search(workspace, None, params, limit, cursor)

    # -- delete --------------------------------------------------------------------------
    def delete(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        res = self.get(workspace, uri)
        self.lifecycle.delete([res])
        self._index_now(wait)
        return res

    # -- search-index overrides ----------------------------------------------------------
    def show_overrides(self, workspace: str, uri: str) -> Resource:
        return self.get(workspace, uri)

    def update_overrides(self, workspace: str, uri: str, changes: dict | SearchIndexOverrides,
                         replace: bool = False, wait: bool | None = None) -> Resource:
        """Merge ``changes`` into the overrides (``replace``: they become the overrides).
        Tags given are added; the index entry follows at once; bytes never change."""
        res = self.get(workspace, uri)
        new = changes if isinstance(changes, SearchIndexOverrides) else parse_overrides(changes)
        if replace:
            merged = new
        else:
            old = res.search_index
            merged = SearchIndexOverrides(
                text=new.text if new.text is not None else old.text,
                tags=list(dict.fromkeys([*old.tags, *new.tags])),
                source_label=new.source_label if new.source_label is not None else old.source_label,
                include_raw_content=(new.include_raw_content if new.include_raw_content is not None
                                     else old.include_raw_content))
        return self._set_overrides(res, merged, wait)

    def clear_overrides(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        return self._set_overrides(self.get(workspace, uri), SearchIndexOverrides(), wait)

    def _set_overrides(self, res: Resource, overrides: SearchIndexOverrides,
                       wait: bool | None = None) -> Resource:
        with self.lifecycle.lock.held():
            with self.catalog.transaction() as conn:
                current = self.catalog.resources.get(res.id, conn)
                if current is None:
                    raise NotFound("resource not found")
                current.search_index = overrides
                current.source_label = overrides.source_label or \
                    derived_source_label(current.flow, current.step)
                text = self.catalog.resources.extract_text(current.id)
                current.content_indexed = effective_content(current, text)[1]
                current.updated_at = self.now()
                current.seq = self.catalog.changes.next_seq(conn)
                self.catalog.resources.update(conn, current)
        self._index_now(wait)
        return current

    # -- signed URLs ---------------------------------------------------------------------
    def signed_url(self, workspace: str, uri: str, ttl: Any = None) -> tuple[str, float]:
        """(path of the signed link, expiry). The resource must exist now."""
        ttl = parse_ttl(ttl)
        res = self.get(workspace, uri)
        expires = int(self.now()) + ttl
        return f"/signed/{self.signer.sign(workspace, res.uri, expires)}", float(expires)

    def resolve_signed(self, token: str) -> tuple[str, str]:
        return self.signer.verify(token, self.now())

    # -- workflow runs -------------------------------------------------------------------
    def delete_workflow(self, workspace: str, workflow_id: str, tier: str | None = None,
                        dry_run: bool = False, wait: bool | None = None) -> list[Resource]:
        """A run's cleanup: every resource of the run (optionally of one tier).
        ``dry_run`` only returns what would be deleted."""
        check_workspace(workspace)
        if tier is not None and tier not in self.settings.tiers:
            raise InvalidSpec(f"tier must be one of {', '.join(self.settings.tiers)}")
        doomed = list(self.catalog.resources.of_workflow(workspace, workflow_id, tier or None))
        if dry_run:
            return doomed
        for i in range(0, len(doomed), 200):
            self.lifecycle.delete(doomed[i:i + 200])
        self._index_now(wait)
        return doomed

    # -- KV pointer store ----------------------------------------------------------------
    def resolve_refs(self, workspace: str, entry: KvEntry) -> dict[str, Any]:
        """For every res:// uri inside the value: its record, or null with a reason."""
        refs: dict[str, Any] = {}
        for uri in find_uris(entry.value):
            try:
                refs[uri] = {"record": self.get(workspace, uri).to_json(self.settings.public_url),
                             "reason": None}
            except NotFound:
                refs[uri] = {"record": None, "reason": self._gone_reason(workspace, uri)}
        return refs

    def _gone_reason(self, workspace: str, uri: str) -> str:
        try:
            ws, _, id_ = parse_uri(uri)
        except NotFound:
            return "missing"
        res = self.catalog.resources.get(id_)
        if res is not None and ws == workspace == res.workspace and res.expires_at is not None \
                and res.expires_at <= self.now():
            return "expired"
        return "missing"

    def dangling_refs(self) -> list[dict[str, str]]:
        out = []
        for entry in self.kv.iter_all():
            for uri in find_uris(entry.value):
                try:
                    self.get(entry.workspace, uri)
                except NotFound:
                    out.append({"workspace": entry.workspace, "key": entry.key, "uri": uri,
                                "reason": self._gone_reason(entry.workspace, uri)})
        return out

    # -- retention -----------------------------------------------------------------------
    def expired(self) -> list[Resource]:
        return list(self.catalog.resources.expired(self.now()))

    def gc(self, dry_run: bool = False) -> dict[str, Any]:
        """Delete every resource past its expires-at (blob, record and index entry
        together) and expired KV keys. ``dry_run`` only previews."""
        started = time.monotonic()
        doomed = self.expired()
        kv_expired = self.kv.expired_keys()
        if not dry_run and (doomed or kv_expired):
            # A durable intent: a sweep interrupted by a crash is finished at next start.
            intent = self.catalog.intents.add_now("gc", {}, self.now())
            for i in range(0, len(doomed), 100):
                self.lifecycle.delete(doomed[i:i + 100])
                fault("gc.after_batch")
            self.kv.sweep()
            with self.catalog.transaction() as conn:
                self.catalog.intents.drop(conn, intent)
            self._index_now()
        if not dry_run:
            emit("gc", removed=len(doomed), removed_bytes=sum(r.size for r in doomed),
                 kv_removed=len(kv_expired), seconds=time.monotonic() - started)
        return {"dry-run": dry_run, "removed": [r.uri for r in doomed],
                "count": len(doomed), "bytes": sum(r.size for r in doomed),
                "kv-removed": kv_expired}

    # -- usage and health ----------------------------------------------------------------
    def usage(self, workspace: str | None = None) -> dict[str, Any]:
        """Bytes and counts per workspace, tier and storage root; extraction failures."""
        rows = self.catalog.resources.usage_groups(workspace)
        groups = [{"workspace": w, "tier": t, "storage-root": r or None, "count": c, "bytes": b}
                  for w, t, r, c, b in rows]
        failures = self.catalog.resources.extraction_failures(workspace)

        def total(key: str) -> list[dict]:
            acc: dict[str, dict] = {}
            for g in groups:
                k = g[key] or "(none)"
                entry = acc.setdefault(k, {key: g[key], "count": 0, "bytes": 0})
                entry["count"] += g["count"]
                entry["bytes"] += g["bytes"]
            return list(acc.values())
        return {"workspace": workspace, "count": sum(g["count"] for g in groups),
                "bytes": sum(g["bytes"] for g in groups), "by-tier": total("tier"),
                "by-storage-root": total("storage-root"),
                "by-workspace": total("workspace") if workspace is None else None,
                "groups": groups, "extraction-failures": failures}

    def index_position(self) -> dict[str, Any]:
        """This process's index in the change log: the position its searches show, how
        many changes and seconds it is behind the catalog."""
        st = self.index.status()
        return {"position": st["position"], "behind": st["behind"],
                "lag-seconds": st["lag-seconds"]}

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


#: Index field and direction (ascending?) of each sort that is not relevance/keyset.
_SORT_FIELDS = {"newest": ("seq", False), "oldest": ("seq", True), "name": ("name_sort", True),
                "size": ("size", False)}


def _fill_and_prepare(svc: ResourceService, job: PersistJob, body: Any) -> Any:
    try:
        for chunk in _chunks(body):
            job.write(chunk)
        return svc._prepare(job, durable=False)
    except BaseException:
        job.abort()
        raise


def _check_json(path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb") as fh:
            json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"a kv persist needs one JSON value as its body: {exc}") from None
    except RecursionError:
        raise InvalidSpec("a kv persist body is nested too deeply to be accepted") from None


def _chunks(body: BinaryIO | Iterable[bytes] | bytes) -> Iterator[bytes]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        for i in range(0, len(body), CHUNK):
            yield bytes(body[i:i + CHUNK])
        if len(body) == 0:
            return
        return
    read = getattr(body, "read", None)
    if read is not None:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return
            yield chunk
    else:
        yield from body

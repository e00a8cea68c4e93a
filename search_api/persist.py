"""The persist pipeline: spec -> streamed bytes -> extraction -> one lifecycle commit.

Everything that can be refused from the spec alone is refused before the body is read;
the body is never held in memory; the commit goes through ``storage.lifecycle`` (intent,
publish, record, change log, group-committed with concurrent persists).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from indexer.detect import guess_content_type, sniff
from indexer.extract import extract
from indexer.pdf import PdfWorker
from indexer.schema import effective_content
from storage.config import DEFAULT_CONNECTION
from storage.backend import BlobWriter, StorageBackend
from storage.catalog import Catalog
from storage.config import Settings
from storage.errors import IdempotencyConflict, InvalidSpec, NotFound
from storage.faults import fault
from storage.layout import (check_key_length, check_workspace, optional_segments, render,
                            slotted_key, split_segments, unslotted_key)
from storage.lifecycle import Lifecycle
from storage.records import Extraction, Resource, Slot, new_id
from storage.spec import PersistSpec, parse_spec

CHUNK = 1024 * 1024
#: Largest body of a ``type: kv`` persist (a workflow result as one JSON value).
KV_PERSIST_MAX_BYTES = 16 * 1024 * 1024


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

    def __init__(self, service: "PersistPipeline", workspace: str, spec: PersistSpec,
                 writer: BlobWriter, backend: StorageBackend, connection: str,
                 key: str, slot: Slot | None, path_under_root: str | None,
                 filename: str, idempotency_key: str | None) -> None:
        self.pipeline = service
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
            return self.pipeline.commit(self, wait)
        except BaseException:
            self.abort()
            raise
        finally:
            self._closed = True


class PersistPipeline:
    """Persists for one service: its settings, catalog, backends and lifecycle, the PDF
    worker, how to find a bound slot, and what to do after a write (``index_now``:
    wait until searchable, or hand the change to the follower)."""

    def __init__(self, settings: Settings, catalog: Catalog,
                 backends: Mapping[str, StorageBackend], lifecycle: Lifecycle,
                 pdf: PdfWorker, slot: Callable[[str, str], Slot],
                 index_now: Callable[..., None], now: Callable[[], float]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.backends = backends
        self.lifecycle = lifecycle
        self.pdf = pdf
        self._slot = slot
        self._index_now = index_now
        self.now = now

    def adopt(self, workspace: str, spec: PersistSpec | dict | str | None,
              wait: bool | None = None) -> PersistResult:
        """Register the file already lying at the spec's slot location (``watch``):
        the same record, index entry and crash safety as a persist, but the bytes are
        read where they are, never rewritten, so a program writing there loses nothing."""
        return self.begin(workspace, spec, adopt=True).commit(wait)

    def begin(self, workspace: str, spec: PersistSpec | dict | str | None,
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
            connection = DEFAULT_CONNECTION
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
        job = self.begin(workspace, spec, idempotency_key)
        try:
            for chunk in _chunks(body):
                job.write(chunk)
        except BaseException:
            job.abort()
            raise
        return job.commit(wait)

    def commit(self, job: PersistJob, wait: bool | None = None) -> PersistResult:
        prepared = self.prepare(job)
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

    def prepare(self, job: PersistJob, durable: bool = True
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
                    job = self.begin(workspace, spec)
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



def _fill_and_prepare(svc: PersistPipeline, job: PersistJob, body: Any) -> Any:
    try:
        for chunk in _chunks(body):
            job.write(chunk)
        return svc.prepare(job, durable=False)
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

"""Upload sessions of the Breyta face (init -> PUT bytes -> complete), and its
one-resource index operations.

A mixin of ResourceService: sessions live in the catalog; bytes go through the core's
own persist pipeline at complete, so an upload is a resource like any other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.config import DEFAULT_CONNECTION
from storage.errors import InvalidSpec, NotFound
from storage.layout import check_key_length, check_workspace, optional_segments, split_segments
from indexer.schema import effective_content
from storage.backend import BlobWriter
from storage.records import Resource, new_id
from storage.spec import parse_spec

from .persist import PersistJob


if TYPE_CHECKING:
    from .service import ResourceService  # noqa: F401


class UploadsMixin:
    """Breyta-face uploads; mixed into ResourceService (``self`` is the service)."""

    # -- uploads (the Breyta face: init -> PUT bytes -> complete) ------------------------
    #: Life of an upload session; expired ones (and their staged bytes) are swept at the
    #: next init.
    UPLOAD_SESSION_SECONDS = 3600

    def upload_init(self, workspace: str, filename: Any, content_type: Any = None,
                    folder: Any = None, replace: bool = False) -> dict[str, Any]:
        """Validate and reserve an upload; its uri is fixed here. The blob will land at
        ``workspaces/<ws>/persist/_upload/<folder>/<filename>`` (deterministic, so
        ``replace`` finds the resource: same uri, version + 1). Only a session row is
        written: an init never completed leaves no resource."""
        import secrets
        from storage.errors import Conflict
        from storage.records import make_uri
        check_workspace(workspace)
        self.sweep_upload_sessions()
        if not isinstance(filename, str) or not filename.strip():
            raise InvalidSpec("filename is required")
        if folder is not None and not isinstance(folder, str):
            raise InvalidSpec("folder must be a string")
        spec = parse_spec({"type": "blob", "filename": filename, "content-type": content_type})
        folder_segs = optional_segments((folder or "").strip("/") or None, "folder")
        name_segs = split_segments(filename, "filename")
        key = "/".join(["workspaces", workspace, "persist", "_upload", *folder_segs, *name_segs])
        platform = self.backends[DEFAULT_CONNECTION]
        check_key_length(key)
        # A file where a folder of this upload must go (or the reverse) is a 409 now,
        # not a refused write after the bytes arrived.
        platform.check_target(key)
        existing = self.catalog.resources.by_location(DEFAULT_CONNECTION, key)
        if existing is not None and existing.expires_at is not None \
                and existing.expires_at <= self.now():
            self.lifecycle.delete([existing])      # expired: gc's work, done now
            self._index_now()
            existing = None
        if existing is not None:
            if existing.type != "file" or existing.flow or existing.step or existing.slot:
                raise Conflict(f"{key} holds a resource that was not uploaded")
            if not replace:
                raise Conflict(f"{'/'.join([*folder_segs, *name_segs])} already exists "
                               f"({existing.uri}); pass replace-existing to replace it")
        resource_id = existing.id if existing is not None else new_id()
        uri = make_uri(workspace, "file", resource_id)
        session_id = secrets.token_hex(16)
        now = self.now()
        # A newer init for the same uri supersedes an unfinished older one.
        superseded = self.catalog.uploads.open({
            "id": session_id, "workspace": workspace, "resource_id": resource_id, "uri": uri,
            "key": key, "staging_key": f"upload-sessions/{workspace}/{session_id}",
            "filename": name_segs[-1], "content_type": spec.content_type,
            "replace": int(bool(replace)), "state": "pending", "size": 0, "created_at": now,
            "expires_at": now + self.UPLOAD_SESSION_SECONDS})
        for staging in superseded:
            platform.delete(staging)
        return {"uri": uri, "upload-session-id": session_id, "key": key,
                "expires-at": now + self.UPLOAD_SESSION_SECONDS}

    def _upload_session(self, workspace: str, session_id: str | None,
                        uri: str | None) -> dict[str, Any]:
        session = self.catalog.uploads.get(workspace, session_id) if session_id is not None \
            else self.catalog.uploads.latest_open(workspace, uri or "")
        if session is None or (uri is not None and session["uri"] != uri) \
                or session["expires_at"] <= self.now():
            raise NotFound("upload session not found or expired: start again with init")
        return session

    def upload_stage(self, workspace: str, uri: str, session_id: str | None = None
                     ) -> tuple[dict[str, Any], BlobWriter]:
        """Open the write stream of an upload's bytes (retained tier limit)."""
        from storage.errors import Conflict
        session = self._upload_session(workspace, session_id, uri)
        if session["state"] not in ("pending", "uploaded"):
            raise Conflict("this upload is already completed")
        writer = self.backends[DEFAULT_CONNECTION].open_write(
            session["staging_key"], self.settings.tiers["retained"].max_bytes)
        return session, writer

    def upload_staged(self, session: dict[str, Any], writer: BlobWriter) -> int:
        """The bytes of a PUT are in: keep them for complete (a new PUT replaces them)."""
        from storage.errors import Conflict
        writer.finish()
        writer.publish()
        if not self.catalog.uploads.move(session["id"], "uploaded", ("pending", "uploaded"),
                                         size=writer.size):
            self.backends[DEFAULT_CONNECTION].delete(session["staging_key"])
            raise Conflict("the upload session ended meanwhile (completed or superseded)")
        return writer.size

    def upload_complete(self, workspace: str, uri: str, session_id: str,
                        wait: bool | None = None) -> Resource:
        """Persist the staged bytes as the file resource reserved at init (a retried
        complete answers the same resource)."""
        from storage.errors import Conflict
        session = self._upload_session(workspace, session_id, uri)
        if session["state"] == "completed":
            return self.get(workspace, session["uri"])
        if session["state"] == "pending":
            raise Conflict("no bytes were uploaded yet: PUT the file to the upload-url first")
        if not self.catalog.uploads.move(session["id"], "completing", ("uploaded",)):
            raise Conflict("this upload is being completed by another request")
        platform = self.backends[DEFAULT_CONNECTION]
        back_to = "uploaded"
        try:
            current = self.catalog.resources.by_location(DEFAULT_CONNECTION, session["key"])
            if current is not None and current.id != session["resource_id"]:
                raise Conflict("another upload to the same folder and filename finished "
                               "meanwhile: start again")
            spec = parse_spec({"type": "blob", "filename": session["filename"],
                               "content-type": session["content_type"]})
            writer = platform.open_write(session["key"], self.settings.tiers[spec.tier].max_bytes)
            job = PersistJob(self.persister, workspace, spec, writer, platform, DEFAULT_CONNECTION, session["key"],
                             None, None, session["filename"], None)
            job.resource_id = session["resource_id"]   # type: ignore[attr-defined]
            try:
                for chunk in platform.open_read(session["staging_key"]):
                    job.write(chunk)
            except FileNotFoundError:
                job.abort()
                back_to = "pending"
                raise Conflict("the uploaded bytes are gone: PUT the file again") from None
            except BaseException:
                job.abort()
                raise
            res = job.commit(wait).resource
        except BaseException:
            self.catalog.uploads.move(session["id"], back_to, ("completing",))
            raise
        self.catalog.uploads.move(session["id"], "completed", ("completing",), size=res.size)
        platform.delete(session["staging_key"])
        return res

    def sweep_upload_sessions(self) -> int:
        """Drop expired upload sessions and their staged bytes; returns how many."""
        import time
        platform = self.backends[DEFAULT_CONNECTION]
        gone = self.catalog.uploads.sweep(self.now())
        for staging in gone:
            platform.delete(staging)
        # Staged bytes whose row is gone (a PUT that raced a newer init): once old, drop.
        live = self.catalog.uploads.staging_keys()
        for blob in list(platform.list("upload-sessions")):
            if blob.key not in live and blob.mtime < time.time() - self.UPLOAD_SESSION_SECONDS:
                platform.delete(blob.key)
        return len(gone)

    # -- one resource's index entry (the Breyta face's search-index show / reindex) -----
    def search_document(self, workspace: str, uri: str) -> tuple[Resource, str, list[str]]:
        """(record, the content text the index holds for it, its indexed tags)."""
        from indexer.schema import indexed_tags
        res = self.get(workspace, uri)
        text, _ = effective_content(res, self.catalog.resources.extract_text(res.id))
        return res, text, indexed_tags(res)

    def reindex_resource(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        """Rewrite one resource's index entry from its record and stored text."""
        res = self.get(workspace, uri)
        with self.catalog.transaction() as conn:
            self.catalog.changes.append(conn, res.id)
        self._index_now(wait)
        return res

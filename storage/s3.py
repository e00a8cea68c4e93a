"""The S3 backend: blobs as objects in a bucket (AWS S3, SeaweedFS, MinIO, R2, ...).

Why boto3: it exposes the whole multipart API (UploadId, ListMultipartUploads, abort)
and conditional *complete* (``If-None-Match`` / ``If-Match`` on
CompleteMultipartUpload), which atomic publishing and crash recovery need.

A write streams into a multipart upload (parts of ``part_size`` bytes, a few in flight
on a shared thread pool, so memory stays bounded), hashing sha256 as it goes and copying
only the first bytes into a local spool file for extraction. The upload is *not*
completed until ``publish``: an uncompleted upload is the staging area, invisible to
readers. Publish completes it conditionally — ``If-None-Match: *`` when the key was
free when the write began, ``If-Match: <etag seen then>`` for a rewrite — so a
concurrent writer loses with VersionConflict (409) instead of overwriting silently.
A body smaller than one part is held in memory and published with one conditional PUT.

Recovery: the staging ref names the upload and the ETag the object will have (for a
multipart object, md5 of the parts' md5s + "-N", from the parts' ETags), so after a
crash the bucket itself says whether the publish happened (``holds``). A live writer
holds an flock on its spool file; uploads of dead writers are aborted by recovery.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .backend import BlobStat, BlobWriter, StorageBackend
from .blockwrite import BlockBuffer, admit
from .errors import InvalidPath, TooLarge, Unavailable, VersionConflict

MiB = 1024 * 1024
SPOOL_SUFFIX = ".s3spool"
UPLOAD_SUFFIX = ".s3upload"
#: An upload whose writer is between CreateMultipartUpload and recording its id looks
#: unowned for a moment; recovery leaves uploads younger than this alone while such a
#: writer exists.
CREATING_GRACE_SECONDS = 600


@dataclass(frozen=True)
class S3Config:
    """One named S3 connection. Credentials are not here: boto3's standard chain finds
    them (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile of the credentials
    file, instance roles), so they never reach the catalog, a log or a config file."""

    name: str
    bucket: str
    endpoint: str | None = None
    region: str | None = None
    prefix: str = ""
    addressing: str = "auto"          # path | virtual | auto
    profile: str | None = None
    part_size: int = 8 * MiB
    parts_in_flight: int = 4

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where


class S3Backend(StorageBackend):
    family = "s3"
    conditional_publish = True
    can_presign = True
    can_adopt = True

    def __init__(self, config: S3Config, tmp_dir: Path, spool_max: int = 10 * MiB,
                 pdf_spool_max: int = 50 * MiB) -> None:
        if config.part_size < 5 * MiB:
            raise ValueError("S3 parts other than the last must be at least 5 MiB")
        self.config = config
        self.name = config.name
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self.tmp_dir = tmp_dir
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.spool_max = spool_max
        self.pdf_spool_max = max(pdf_spool_max, spool_max)
        session = boto3.session.Session(profile_name=config.profile) if config.profile \
            else boto3.session.Session()
        self.client = session.client(
            "s3", endpoint_url=config.endpoint, region_name=config.region,
            config=Config(
                s3={"addressing_style": config.addressing},
                # SigV4 everywhere: presigned URLs with response overrides need it.
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5, read_timeout=60,
                max_pool_connections=32,
                # The sha256 of the body is ours; botocore's extra CRC per part is not needed.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required"))
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"s3-{config.name}")

    # -- plumbing ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"connection {self.name!r} ({self.config.describe()})"

    def object_key(self, key: str) -> str:
        if key.startswith("/") or "\\" in key or "\x00" in key or \
                any(seg in ("", ".", "..") for seg in key.split("/")):
            raise InvalidPath(f"invalid storage key {key!r}")
        return self.prefix + key

    def call(self, op: str, key: str | None = None, **kwargs: Any) -> Any:
        """One S3 call, its failures translated at the boundary: a missing object is
        FileNotFoundError, a lost condition VersionConflict, the rest Unavailable
        naming the connection (never the credentials)."""
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            raise self._translate(exc, key) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"storage connection {self.name!r} is unavailable: "
                              f"{type(exc).__name__}", connection=self.name) from exc

    def _translate(self, exc: ClientError, key: str | None) -> Exception:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404 and code != "NoSuchUpload":
            return FileNotFoundError(key or "")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return VersionConflict(
                f"{key} was changed by another writer on connection {self.name!r} since "
                f"this write began; nothing was overwritten", connection=self.name)
        if code == "NoSuchUpload":
            return NoSuchUpload(code)
        return Unavailable(f"storage connection {self.name!r} answered {code or status}",
                           connection=self.name)

    # -- primitives ----------------------------------------------------------------------
    def open_write(self, key: str, max_bytes: int) -> "S3Writer":
        return S3Writer(self, key, max_bytes)

    def adopt(self, key: str, max_bytes: int) -> "S3AdoptWriter":
        """Take the object another program put at ``key`` as the blob (sync-slot): read
        once to hash it and spool its head, never rewritten. FileNotFoundError if gone."""
        return S3AdoptWriter(self, key, max_bytes)

    def open_read(self, key: str, start: int = 0, end: int | None = None,
                  chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = self.call("get_object", key, Key=self.object_key(key), **kwargs)
        body = resp["Body"]

        def gen() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            except BotoCoreError as exc:
                raise Unavailable(f"storage connection {self.name!r} broke off a read",
                                  connection=self.name) from exc
            finally:
                body.close()
        return gen()

    def stat(self, key: str) -> BlobStat:
        head = self.call("head_object", key, Key=self.object_key(key))
        return BlobStat(key, int(head["ContentLength"]), head["LastModified"].timestamp(),
                        head.get("ETag", "").strip('"') or None)

    def delete(self, key: str) -> bool:
        # S3 answers 204 for a missing key too: ask first, so the answer means something.
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        self.call("delete_object", key, Key=self.object_key(key))
        return True

    def list(self, prefix: str) -> Iterator[BlobStat]:
        """Flat listing (no delimiter: SeaweedFS reports emptied folders as common
        prefixes after deletes); ``prefix`` is a folder, as on local disk."""
        base = self.prefix + (prefix.strip("/") + "/" if prefix.strip("/") else "")
        token = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": base}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call("list_objects_v2", None, **kwargs)
            for obj in page.get("Contents", []):
                yield BlobStat(obj["Key"][len(self.prefix):], int(obj["Size"]),
                               obj["LastModified"].timestamp(), obj.get("ETag", "").strip('"'))
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def sync_barrier(self) -> None:
        """Nothing to do: an acknowledged S3 write is durable."""

    # -- staging and recovery ------------------------------------------------------------
    def staging_exists(self, staging_ref: str) -> bool:
        ref = _parse_ref(staging_ref)
        if not ref.get("upload"):
            return False        # a small body lived in memory only: nothing staged remains
        try:
            self.call("list_parts", ref["key"], Key=self.object_key(ref["key"]),
                      UploadId=ref["upload"], MaxParts=1)
            return True
        except NoSuchUpload:
            return False

    def discard_staging(self, staging_ref: str) -> None:
        ref = _parse_ref(staging_ref)
        if ref.get("upload"):
            self._abort_upload(ref["key"], ref["upload"])
        if ref.get("spool"):
            _unlink_spool(self.tmp_dir / ref["spool"])

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.call("abort_multipart_upload", key, Key=self.object_key(key),
                      UploadId=upload_id)
        except (NoSuchUpload, FileNotFoundError):
            pass

    def holds(self, staging_ref: str, key: str) -> bool:
        ref = _parse_ref(staging_ref)
        try:
            stat = self.stat(key)
        except FileNotFoundError:
            return False
        return ref.get("etag") is None or stat.etag == ref["etag"]

    def list_staging(self) -> Iterator[tuple[str, float]]:
        """Multipart uploads under the prefix whose writer is gone, and spool files of
        dead writers."""
        live, creating = self._live_writers()
        marker: dict[str, Any] = {}
        now = time.time()
        while True:
            page = self.call("list_multipart_uploads", None, Prefix=self.prefix, **marker)
            for up in page.get("Uploads", []):
                started = up["Initiated"].timestamp()
                if up["UploadId"] in live or (creating and now - started < CREATING_GRACE_SECONDS):
                    continue
                yield _make_ref(up["Key"][len(self.prefix):], up["UploadId"]), started
            if not page.get("IsTruncated"):
                break
            marker = {"KeyMarker": page["NextKeyMarker"],
                      "UploadIdMarker": page["NextUploadIdMarker"]}

    def _live_writers(self) -> tuple[set[str], bool]:
        """Upload ids whose writer (in any process on this data home) is alive, and
        whether some live writer has not recorded its upload id yet. Spool files of dead
        writers are removed on the way."""
        live: set[str] = set()
        creating = False
        for spool in sorted(self.tmp_dir.glob(f"*{SPOOL_SUFFIX}")):
            try:
                with open(spool, "rb") as fh:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        sidecar = spool.with_suffix(UPLOAD_SUFFIX)
                        if sidecar.exists():
                            live.add(sidecar.read_text().strip())
                        else:
                            creating = True
                        continue
                _unlink_spool(spool)
            except FileNotFoundError:
                continue
        return live, creating

    # -- signed downloads ----------------------------------------------------------------
    def presigned_get(self, key: str, ttl: int, filename: str | None = None,
                      content_type: str | None = None) -> str:
        """A short-lived presigned GET of the object, so big downloads bypass us."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if filename:
            safe = filename.replace('"', "").replace("\\", "")
            params["ResponseContentDisposition"] = f'attachment; filename="{safe}"'
        if content_type:
            params["ResponseContentType"] = content_type
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)


class NoSuchUpload(Exception):
    """The multipart upload is gone (completed or aborted)."""


class S3Writer(BlobWriter):
    def __init__(self, backend: S3Backend, key: str, max_bytes: int) -> None:
        self.backend = backend
        self.key = key
        self.object_key = backend.object_key(key)
        self.max_bytes = max_bytes
        self.size = 0
        self.sha256 = ""
        self._hash = hashlib.sha256()
        self._blocks = BlockBuffer(backend.config.part_size, self._ship, keeps=True)
        self._parts: list[tuple[int, Future]] = []
        self._upload: str | None = None
        self._etag: str | None = None
        self._done = False
        self._lock = threading.Lock()
        # What the key holds now decides the publish condition: a rewrite must find
        # exactly this version still there.
        try:
            self._prior_etag: str | None = backend.stat(key).etag
        except FileNotFoundError:
            self._prior_etag = None
        name = uuid.uuid4().hex
        self._spool_path = backend.tmp_dir / f"{name}{SPOOL_SUFFIX}"
        self._spool = open(self._spool_path, "wb+")
        # The lock says "a live writer owns this upload" to recovery in any process.
        fcntl.flock(self._spool, fcntl.LOCK_EX)
        self._spool_left: int | None = None     # decided by the first bytes
        self.staging_ref = _make_ref(key, None, spool=self._spool_path.name)

    # -- streaming -----------------------------------------------------------------------
    def write(self, chunk: bytes) -> None:
        admit(self, chunk)
        self._hash.update(chunk)
        self._to_spool(chunk)
        try:
            self._blocks.add(chunk)        # a part is shipped once one is gathered
        except BaseException:
            self.abort()
            raise

    def _to_spool(self, chunk: bytes) -> None:
        if self._spool_left is None:
            # Extraction reads a bounded head; a PDF needs the whole file (under a bound).
            pdf = bytes(chunk[:5]) == b"%PDF-"
            self._spool_left = self.backend.pdf_spool_max if pdf else self.backend.spool_max
        if self._spool_left > 0:
            part = chunk[: self._spool_left]
            self._spool.write(part)
            self._spool_left -= len(part)

    def _ship(self, data: bytes) -> None:
        """Upload one part; waits while too many are in flight (bounded memory)."""
        b = self.backend
        if self._upload is None:
            resp = b.call("create_multipart_upload", self.key, Key=self.object_key)
            self._upload = resp["UploadId"]
            self._spool_path.with_suffix(UPLOAD_SUFFIX).write_text(self._upload)
        in_flight = [f for _, f in self._parts if not f.done()]
        while len(in_flight) >= b.config.parts_in_flight:
            wait(in_flight, return_when=FIRST_COMPLETED)
            in_flight = [f for f in in_flight if not f.done()]
        for _, f in self._parts:
            if f.done() and f.exception() is not None:
                raise f.exception()   # type: ignore[misc]
        number = len(self._parts) + 1
        self._parts.append((number, b.pool.submit(
            b.call, "upload_part", self.key, Key=self.object_key, UploadId=self._upload,
            PartNumber=number, Body=data)))

    def finish(self, durable: bool = True) -> None:
        self._spool.flush()
        self.sha256 = self._hash.hexdigest()
        if self._upload is not None:
            self._blocks.flush()
            etags = [f.result()["ETag"].strip('"') for _, f in self._parts]
            digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags))
            self._etag = f"{digest.hexdigest()}-{len(etags)}"
        else:
            self._etag = hashlib.md5(self._blocks.pending).hexdigest()
        self.staging_ref = _make_ref(self.key, self._upload, self._etag, self._spool_path.name)

    def read_staged(self, max_bytes: int) -> bytes:
        self._spool.flush()
        with open(self._spool_path, "rb") as fh:
            return fh.read(max_bytes)

    def staged_path(self) -> str | None:
        """The local spool: the first bytes only (the extraction bound), or the whole
        file for a PDF under the PDF bound."""
        self._spool.flush()
        return str(self._spool_path)

    def publish(self, durable: bool = True) -> None:
        b = self.backend
        cond = {"IfMatch": f'"{self._prior_etag}"'} if self._prior_etag else {"IfNoneMatch": "*"}
        if self._upload is not None:
            parts = [{"PartNumber": n, "ETag": f.result()["ETag"]} for n, f in self._parts]
            b.call("complete_multipart_upload", self.key, Key=self.object_key,
                   UploadId=self._upload, MultipartUpload={"Parts": parts}, **cond)
        else:
            b.call("put_object", self.key, Key=self.object_key, Body=bytes(self._blocks.pending),
                   **cond)
        self._done = True
        self._cleanup()

    def abort(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            for _, f in self._parts:
                f.cancel()
            # Parts still uploading would outlive the abort; wait for them first.
            wait([f for _, f in self._parts])
            if self._upload is not None:
                try:
                    self.backend._abort_upload(self.key, self._upload)
                except Exception:   # noqa: BLE001 - unreachable now: recovery aborts it
                    pass            # later (our spool lock is released below)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self._blocks.clear()
        self._parts = []
        try:
            self._spool.close()          # releases the flock
        finally:
            _unlink_spool(self._spool_path)


class S3AdoptWriter(S3Writer):
    """An object already in the bucket, taken as it is: publish and abort leave it."""

    def __init__(self, backend: S3Backend, key: str, max_bytes: int) -> None:
        super().__init__(backend, key, max_bytes)
        if self._prior_etag is None:
            self._cleanup()
            raise FileNotFoundError(key)
        try:
            # If-Match: the bytes hashed are exactly the version recorded (the ETag).
            resp = backend.call("get_object", key, Key=self.object_key,
                                IfMatch=f'"{self._prior_etag}"')
            if int(resp["ContentLength"]) > max_bytes:
                resp["Body"].close()
                raise TooLarge(f"{key} is {int(resp['ContentLength']):,} bytes, over the "
                               f"tier limit of {max_bytes:,}", limit=max_bytes)
            for chunk in resp["Body"].iter_chunks(1024 * 1024):
                self.size += len(chunk)
                self._hash.update(chunk)
                self._to_spool(chunk)
        except BaseException:
            self._done = True
            self._cleanup()
            raise

    def write(self, chunk: bytes) -> None:
        raise TypeError("an adopted object takes no bytes")

    def finish(self, durable: bool = True) -> None:
        self._spool.flush()
        self.sha256 = self._hash.hexdigest()
        self._etag = self._prior_etag
        self.staging_ref = _make_ref(self.key, None, self._etag, self._spool_path.name)

    def publish(self, durable: bool = True) -> None:
        self._done = True
        self._cleanup()


def _make_ref(key: str, upload: str | None, etag: str | None = None,
              spool: str | None = None) -> str:
    return json.dumps({"s3": key, "upload": upload, "etag": etag, "spool": spool},
                      separators=(",", ":"))


def _parse_ref(staging_ref: str) -> dict[str, Any]:
    try:
        ref = json.loads(staging_ref)
    except ValueError:
        return {}
    return {"key": ref.get("s3"), "upload": ref.get("upload"), "etag": ref.get("etag"),
            "spool": ref.get("spool")}


def _unlink_spool(spool: Path) -> None:
    for p in (spool, spool.with_suffix(UPLOAD_SUFFIX)):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass

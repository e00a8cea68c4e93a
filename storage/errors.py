"""The service's exception tree, shared by the core, the HTTP API and the CLI.

Every error carries its wire ``code``, its HTTP ``status`` and its CLI exit code as
class attributes, so the HTTP layer and the CLI each map them in exactly one place::

    ResourceError                      500  internal
    ├── BadRequest                     400  bad_request
    │   ├── InvalidPath                400  invalid_path
    │   ├── TemplateError              400  template_error
    │   ├── InvalidSpec                400  invalid_spec
    │   ├── InvalidQuery               400  invalid_query
    │   └── InvalidCursor              400  invalid_cursor
    ├── Unauthorized                   401  unauthorized
    ├── Forbidden                      403  forbidden
    │   └── BadSignature               403  bad_signature
    ├── NotFound                       404  not_found
    ├── Conflict                       409  conflict
    │   ├── IdempotencyConflict        409  idempotency_conflict
    │   └── VersionConflict            409  version_conflict
    ├── TooLarge                       413  too_large
    ├── RangeNotSatisfiable            416  range_not_satisfiable
    ├── StorageFull                    507  storage_full
    ├── QuotaExceeded                  507  quota_exceeded
    ├── NotEnabled                     501  not_enabled
    └── Unavailable                    503  unavailable
        ├── IndexBusy                  503  index_busy
        └── CatalogDamaged             503  catalog_damaged
"""
from __future__ import annotations

__all__ = [
    "ResourceError", "BadRequest", "InvalidPath", "TemplateError", "InvalidSpec",
    "InvalidQuery", "InvalidCursor", "Unauthorized", "Forbidden", "BadSignature",
    "NotFound", "Conflict", "IdempotencyConflict", "VersionConflict", "TooLarge",
    "RangeNotSatisfiable", "StorageFull", "QuotaExceeded", "NotEnabled", "Unavailable",
    "IndexBusy", "CatalogDamaged", "from_os_error", "translate_unexpected",
]


class ResourceError(Exception):
    status = 500
    code = "internal"
    exit_code = 1

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(ResourceError):
    status, code = 400, "bad_request"


class InvalidPath(BadRequest):
    code = "invalid_path"


class TemplateError(BadRequest):
    code = "template_error"


class InvalidSpec(BadRequest):
    code = "invalid_spec"


class InvalidQuery(BadRequest):
    code = "invalid_query"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


class Unauthorized(ResourceError):
    status, code = 401, "unauthorized"


class Forbidden(ResourceError):
    status, code = 403, "forbidden"


class BadSignature(Forbidden):
    code = "bad_signature"


class NotFound(ResourceError):
    status, code = 404, "not_found"


class Conflict(ResourceError):
    status, code = 409, "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class VersionConflict(Conflict):
    code = "version_conflict"


class TooLarge(ResourceError):
    status, code = 413, "too_large"


class RangeNotSatisfiable(ResourceError):
    status, code = 416, "range_not_satisfiable"


class StorageFull(ResourceError):
    status, code = 507, "storage_full"
class QuotaExceeded(ResourceError):
    """A workspace's tier limit (bytes or resources) would be crossed: 507 Insufficient
    Storage, as the space is full for this tenant, not the request malformed."""
    status, code = 507, "quota_exceeded"


class NotEnabled(ResourceError):
    """A feature this deployment opted out of (semantic search with RESOURCES_SEMANTIC=off)."""
    status, code = 501, "not_enabled"


class Unavailable(ResourceError):
    status, code = 503, "unavailable"


class CatalogDamaged(Unavailable):
    code = "catalog_damaged"


class IndexBusy(Unavailable):
    code = "index_busy"


def from_os_error(exc: OSError, where: str) -> ResourceError | None:
    """The typed error a filesystem refusal means for the caller, or None when it is a
    genuine fault. Called where a write meets the disk, so a collision, a name past the
    OS limits or a full disk is a precise 4xx/507, never a 500 with half a write."""
    import errno
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("storage is full; nothing was written (free space and retry)")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return Conflict(f"{where}: a file already lives where a folder of this path must go")
    if exc.errno == errno.EISDIR:
        return Conflict(f"{where}: a folder already lives at this path")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidPath(f"{where}: the path is longer than the filesystem allows")
    if exc.errno == errno.ELOOP:
        return InvalidPath(f"{where}: the path goes through a symbolic link")
    return None


def translate_unexpected(exc: BaseException) -> ResourceError | None:
    """Errors raised below the typed tree that still mean something precise to a client:
    a full disk (SQLite's or the filesystem's) and a damaged catalog. Each face calls
    this before answering 500."""
    import sqlite3
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return StorageFull("storage is full; nothing was written (free space and retry)")
    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in str(exc)
                                                    or "not a database" in str(exc)):
        return CatalogDamaged("the catalog is damaged; the operator must restore it "
                              "(resources doctor, docs/recovery.md)")
    if isinstance(exc, OSError):
        typed = from_os_error(exc, "storage")
        if isinstance(typed, StorageFull):
            return typed
    return None

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
    ├── QuotaExceeded                  507  quota_exceeded
    └── Unavailable                    503  unavailable
        └── IndexBusy                  503  index_busy
"""
from __future__ import annotations

__all__ = [
    "ResourceError", "BadRequest", "InvalidPath", "TemplateError", "InvalidSpec",
    "InvalidQuery", "InvalidCursor", "Unauthorized", "Forbidden", "BadSignature",
    "NotFound", "Conflict", "IdempotencyConflict", "VersionConflict", "TooLarge",
    "RangeNotSatisfiable", "QuotaExceeded", "Unavailable", "IndexBusy",
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


class QuotaExceeded(ResourceError):
    """A workspace's tier limit (bytes or resources) would be crossed: 507 Insufficient
    Storage, as the space is full for this tenant, not the request malformed."""
    status, code = 507, "quota_exceeded"


class Unavailable(ResourceError):
    status, code = 503, "unavailable"


class IndexBusy(Unavailable):
    code = "index_busy"

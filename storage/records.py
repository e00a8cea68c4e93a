"""The resource record, its uri, and the one place that turns it into JSON."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ulid import ULID

from .clock import rfc3339
from .errors import NotFound

URI_PREFIX = "res://v1/ws/"
_URI = re.compile(r"^res://v1/ws/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/(file|result)/([0-9A-HJKMNP-TV-Z]{26})$")
TYPES = ("file", "result")


def new_id() -> str:
    return str(ULID())


def make_uri(workspace: str, type_: str, id_: str) -> str:
    return f"{URI_PREFIX}{workspace}/{type_}/{id_}"


def parse_uri(uri: str) -> tuple[str, str, str]:
    """(workspace, type, id); a malformed uri is simply not found (no oracle)."""
    m = _URI.match(uri or "")
    if not m:
        raise NotFound("resource not found")
    return m.group(1), m.group(2), m.group(3)


@dataclass
class Extraction:
    extractor: str = "none"        # text | pdf | none
    chars: int = 0
    truncated: bool = False
    error: str | None = None
    detected_type: str | None = None


@dataclass
class SearchIndexOverrides:
    text: str | None = None
    tags: list[str] = field(default_factory=list)
    source_label: str | None = None
    include_raw_content: bool | None = None

    def is_empty(self) -> bool:
        return self.text is None and not self.tags and self.source_label is None \
            and self.include_raw_content is None

    def to_json(self) -> dict:
        return {"text": self.text, "tags": list(self.tags), "source-label": self.source_label,
                "include-raw-content": self.include_raw_content}


@dataclass
class Resource:
    id: str
    workspace: str
    type: str
    tier: str
    display_name: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_backend: str
    connection: str
    storage_root: str | None
    path_under_root: str | None
    path: str
    slot: str | None
    flow: str | None
    step: str | None
    workflow_id: str | None
    tags: list[str]
    source_label: str
    created_at: float
    updated_at: float
    expires_at: float | None
    version: int
    content_indexed: bool
    content_truncated: bool
    seq: int = 0
    extraction: Extraction = field(default_factory=Extraction)
    search_index: SearchIndexOverrides = field(default_factory=SearchIndexOverrides)

    @property
    def uri(self) -> str:
        return make_uri(self.workspace, self.type, self.id)

    def web_path(self) -> str:
        return f"/ui/{self.workspace}/resources/{self.id}"

    def to_json(self, base_url: str = "") -> dict[str, Any]:
        """The CONTRACT record (kebab-case keys, RFC 3339 UTC times, webUrl)."""
        return {
            "uri": self.uri,
            "id": self.id,
            "workspace": self.workspace,
            "type": self.type,
            "tier": self.tier,
            "display-name": self.display_name,
            "filename": self.filename,
            "content-type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "storage-backend": self.storage_backend,
            "connection": self.connection,
            "storage-root": self.storage_root,
            "path-under-root": self.path_under_root,
            "path": self.path,
            "slot": self.slot,
            "flow": self.flow,
            "step": self.step,
            "workflow-id": self.workflow_id,
            "tags": list(self.tags),
            "source-label": self.source_label,
            "created-at": rfc3339(self.created_at),
            "updated-at": rfc3339(self.updated_at),
            "expires-at": rfc3339(self.expires_at),
            "version": self.version,
            "content-indexed": self.content_indexed,
            "content-truncated": self.content_truncated,
            "extraction": {
                "extractor": self.extraction.extractor,
                "chars": self.extraction.chars,
                "truncated": self.extraction.truncated,
                "error": self.extraction.error,
                "detected-type": self.extraction.detected_type,
            },
            "search-index": self.search_index.to_json(),
            "webUrl": f"{base_url}{self.web_path()}",
        }

    # -- catalog row mapping ---------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: this is on the persist hot path and
        # asdict deep-copies every list and nested dataclass.
        row = {name: getattr(self, name) for name in self.__dataclass_fields__}
        row["uri"] = self.uri
        row["tags"] = json.dumps(self.tags)
        row["extraction"] = json.dumps(asdict(self.extraction))
        row["search_index"] = json.dumps(asdict(self.search_index))
        row["content_indexed"] = int(self.content_indexed)
        row["content_truncated"] = int(self.content_truncated)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Resource":
        data = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        data["tags"] = json.loads(row["tags"] or "[]")
        data["extraction"] = Extraction(**json.loads(row["extraction"] or "{}"))
        data["search_index"] = SearchIndexOverrides(**json.loads(row["search_index"] or "{}"))
        data["content_indexed"] = bool(row["content_indexed"])
        data["content_truncated"] = bool(row["content_truncated"])
        return cls(**data)


@dataclass
class Slot:
    workspace: str
    name: str
    connection: str
    root: str
    created_at: float
    updated_at: float

    def to_json(self, backend_family: str = "platform") -> dict[str, Any]:
        return {"workspace": self.workspace, "slot": self.name, "connection": self.connection,
                "root": self.root, "storage-backend": backend_family,
                "created-at": rfc3339(self.created_at), "updated-at": rfc3339(self.updated_at)}

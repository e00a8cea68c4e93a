"""The persist spec (CONTRACT: mirrors a workflow step's `:persist` map), parsed strictly."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .mediatype import normalize as normalize_media_type
from .errors import InvalidSpec
from .records import SearchIndexOverrides

SPEC_KEYS = {"type", "tier", "slot", "path", "filename", "content-type", "display-name",
             "params", "flow", "step", "workflow-id", "ttl-seconds", "search-index", "tags",
             "source-label"}
OVERRIDE_KEYS = {"text", "tags", "source-label", "include-raw-content"}


@dataclass
class PersistSpec:
    type: str = "blob"
    tier: str = "retained"
    slot: str | None = None
    path: str | None = None
    filename: str | None = None
    content_type: str | None = None
    display_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    flow: str | None = None
    step: str | None = None
    workflow_id: str | None = None
    ttl_seconds: int | None = None
    tags: list[str] = field(default_factory=list)
    search_index: SearchIndexOverrides = field(default_factory=SearchIndexOverrides)

    @property
    def resource_type(self) -> str:
        return "file" if self.type == "blob" else "result"

    def canonical(self) -> str:
        """A stable form for idempotency comparison."""
        return json.dumps(self.__dict__, default=lambda o: o.__dict__, sort_keys=True)


def _opt_str(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"spec field {key!r} must be a string")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidSpec(f"{what} must be a list of non-empty strings")
    if any(len(v) > 200 or any(ord(c) < 32 for c in v) for v in value):
        raise InvalidSpec(f"{what}: each tag must be at most 200 printable characters")
    return [v.strip() for v in value]


def parse_overrides(raw: Any, partial: bool = False) -> SearchIndexOverrides:
    if raw is None:
        return SearchIndexOverrides()
    if not isinstance(raw, dict):
        raise InvalidSpec("search-index must be a JSON object")
    unknown = set(raw) - OVERRIDE_KEYS
    if unknown:
        raise InvalidSpec(f"search-index has unknown field(s): {', '.join(sorted(unknown))}")
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidSpec("search-index.text must be a string")
    label = raw.get("source-label")
    if label is not None and not isinstance(label, str):
        raise InvalidSpec("search-index.source-label must be a string")
    raw_content = raw.get("include-raw-content")
    if raw_content is not None and not isinstance(raw_content, bool):
        raise InvalidSpec("search-index.include-raw-content must be true or false")
    return SearchIndexOverrides(text=text, tags=_str_list(raw.get("tags"), "search-index.tags"),
                                source_label=label, include_raw_content=raw_content)


def _why(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def parse_spec(raw: Any) -> PersistSpec:
    if raw is None:
        raw = {}
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidSpec(f"persist spec is not valid JSON: {_why(exc)}") from None
    if not isinstance(raw, dict):
        raise InvalidSpec("persist spec must be a JSON object")
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise InvalidSpec(f"persist spec has unknown field(s): {', '.join(sorted(unknown))}")
    spec = PersistSpec()
    spec.type = raw.get("type", "blob")
    if spec.type not in ("blob", "kv"):
        raise InvalidSpec(f"spec type must be 'blob' or 'kv', not {spec.type!r}")
    spec.tier = raw.get("tier", "retained")
    if spec.tier not in ("retained", "ephemeral"):
        raise InvalidSpec(f"tier must be 'retained' or 'ephemeral', not {spec.tier!r}")
    for key in ("slot", "path", "filename", "content-type", "display-name", "flow", "step",
                "workflow-id"):
        setattr(spec, key.replace("-", "_"), _opt_str(raw, key))
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidSpec("spec params must be an object such as {\"input\": {...}}")
    spec.params = params
    ttl = raw.get("ttl-seconds")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise InvalidSpec("ttl-seconds must be a positive integer")
        spec.ttl_seconds = ttl
    spec.tags = _str_list(raw.get("tags"), "tags")
    spec.search_index = parse_overrides(raw.get("search-index"))
    if raw.get("source-label") is not None:
        spec.search_index.source_label = _opt_str(raw, "source-label")
    if spec.content_type is not None:
        spec.content_type = normalize_media_type(spec.content_type)
    if spec.display_name is not None and len(spec.display_name) > 1000:
        raise InvalidSpec("display-name is longer than 1000 characters")
    return spec

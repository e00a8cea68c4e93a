"""Where a blob lands: template rendering and path validation (CONTRACT: `path`).

Everything here is pure: it runs before any byte is written, so a bad path or a
missing template variable is rejected with nothing to clean up.
"""
from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any, Mapping

from .errors import InvalidPath, TemplateError

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_WORKSPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SLOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024
#: The whole storage key (workspace, flow, step, path and filename together): each part
#: may be long, but their sum must stay well inside the OS's 4,096-byte path limit.
MAX_KEY_BYTES = 2048
RUNTIME_VARS = ("workspace-id", "flow-slug", "step-id")
PARAM_GROUPS = ("input", "data", "query")


def render(template: str, params: Mapping[str, Any], runtime: Mapping[str, str | None],
           what: str) -> str:
    """Render ``{{input.x}}``-style variables; a missing variable is an error."""
    if "{{" not in template and "}}" not in template:
        return template

    def value_of(name: str) -> str:
        name = name.strip()
        if name in RUNTIME_VARS:
            value = runtime.get(name)
            if value in (None, ""):
                raise TemplateError(f"{what}: template variable {{{{{name}}}}} has no value")
            return str(value)
        group, _, rest = name.partition(".")
        if group not in PARAM_GROUPS or not rest:
            raise TemplateError(
                f"{what}: unknown template variable {{{{{name}}}}} (use input.x, data.x, "
                f"query.x, workspace-id, flow-slug or step-id)")
        node: Any = params.get(group)
        for part in rest.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise TemplateError(f"{what}: template variable {{{{{name}}}}} is missing")
            node = node[part]
        if node is None or isinstance(node, (dict, list)):
            raise TemplateError(f"{what}: template variable {{{{{name}}}}} is not a scalar")
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    out = _TEMPLATE.sub(lambda m: value_of(m.group(1)), template)
    if "{{" in out or "}}" in out:
        raise TemplateError(f"{what}: unbalanced template braces in {template!r}")
    return out


#: Characters that change how a name looks without being visible (bidi controls,
#: zero-width characters): two names that read the same must be the same name.
_INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def split_segments(value: str, what: str) -> list[str]:
    """Validate a relative path and return its segments (CONTRACT path rules).

    Names are normalised to NFC (NFC and NFD spellings of one name are one resource);
    bidi controls and zero-width characters are refused, and so are segments that only
    look like '.', '..' or contain a slash in a compatibility form (fullwidth dots)."""
    if not isinstance(value, str):
        raise InvalidPath(f"{what} must be a string")
    value = unicodedata.normalize("NFC", value)
    if _INVISIBLE.search(value):
        ch = _INVISIBLE.search(value).group(0)
        raise InvalidPath(f"{what} must not contain invisible or direction-changing "
                          f"characters (U+{ord(ch):04X}): {value!r}")
    if value.startswith("/"):
        raise InvalidPath(f"{what} must be relative: {value!r} starts with '/'")
    if "\\" in value:
        raise InvalidPath(f"{what} must not contain a backslash: {value!r}")
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127:
            kind = "a NUL byte" if ch == "\x00" else f"a control character (0x{ord(ch):02x})"
            raise InvalidPath(f"{what} must not contain {kind}: {value!r}")
    if len(value.encode()) > MAX_PATH_BYTES:
        raise InvalidPath(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    segments = value.split("/")
    for seg in segments:
        if seg == "":
            raise InvalidPath(f"{what} has an empty segment: {value!r}")
        if seg in (".", ".."):
            raise InvalidPath(f"{what} must not contain a {seg!r} segment: {value!r}")
        folded = unicodedata.normalize("NFKC", seg)
        if folded in (".", "..") or "/" in folded or "\\" in folded:
            raise InvalidPath(f"{what} has a segment that looks like {folded!r}: {value!r}")
        if len(seg.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidPath(f"{what} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return segments


def optional_segments(value: str | None, what: str) -> list[str]:
    return [] if value in (None, "") else split_segments(value, what)


def check_workspace(ws: str) -> str:
    if not isinstance(ws, str) or not _WORKSPACE.match(ws):
        raise InvalidPath(f"workspace {ws!r} is not valid (letters, digits, '.', '_', '-')")
    return ws


def check_slot_name(name: str) -> str:
    if not isinstance(name, str) or not _SLOT.match(name):
        raise InvalidPath(f"slot name {name!r} is not valid (letters, digits, '.', '_', ':', '-')")
    return name


def check_root(root: str) -> str:
    return "/".join(split_segments(root, "storage root"))


def unslotted_key(ws: str, flow: str | None, step: str | None,
                  path_segments: list[str], filename_segments: list[str]) -> str:
    """workspaces/<ws>/persist/<flow>/<step>/<uuid>/<path>/<filename>; never collides."""
    parts = ["workspaces", ws, "persist",
             *(optional_segments(flow, "flow") or ["_"]),
             *(optional_segments(step, "step") or ["_"]),
             uuid.uuid4().hex, *path_segments, *filename_segments]
    return "/".join(parts)


def slotted_key(ws: str, root: str, path_segments: list[str],
                filename_segments: list[str]) -> tuple[str, str]:
    """workspaces/<ws>/storage/<root>/<path>/<filename>; returns (key, path-under-root)."""
    under = "/".join([*path_segments, *filename_segments])
    return "/".join(["workspaces", ws, "storage", root, under]), under


def check_key_length(key: str) -> str:
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise InvalidPath(f"the storage path would be {size:,} bytes, over the limit of "
                          f"{MAX_KEY_BYTES:,}; shorten flow, step, path or filename")
    return key


def folder_prefixes(path_under_root: str | None) -> list[str]:
    """Every folder of a path: 'a/b/c.pdf' -> ['a', 'a/b'] (folder-aware prefix search)."""
    if not path_under_root:
        return []
    parts = path_under_root.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]

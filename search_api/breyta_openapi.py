"""The OpenAPI part of the Breyta face (/api/...), registered with the document on
import (app.py imports it beside the routes)."""
from __future__ import annotations

from typing import Any

from .breyta import (ITEM_FIELDS, MAX_LIST_LIMIT, MAX_OFFSET, SEARCH_INDEX_OPS,
                     SEARCH_MODES)
from .openapi import EXTRA_PATHS, _err, _q


# -- paths -----------------------------------------------------------------------------------
def _paths() -> dict[str, Any]:
    s, ns = {"type": "string"}, {"type": ["string", "null"]}
    headers = [
        {"name": "X-Breyta-Workspace", "in": "header", "required": False, "schema": s,
         "description": "Workspace (default: the key's own); another workspace answers 404"},
        {"name": "X-Breyta-Client", "in": "header", "required": False, "schema": s,
         "description": "cli"}]
    uri = _q("uri", "Resource uri, res://v1/ws/<ws>/<type>/<id>", required=True)
    wait = _q("wait-for", "indexed: answer once this node's searches show the change; "
                          "durable: once saved (search-index waits unless durable)",
              schema={"type": "string", "enum": ["indexed", "durable"]})
    integer = {"type": "integer"}
    limit_list = _q("limit", "Page size 1..1000 (default 10)",
                    schema={"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT})
    offset = _q("offset", f"Items to skip, 0..{MAX_OFFSET}",
                schema={"type": "integer", "minimum": 0, "maximum": MAX_OFFSET})
    cursor = _q("cursor", "nextCursor of the previous page")
    item_schema = {"type": "object", "required": list(ITEM_FIELDS), "properties": {
        **{k: ns for k in ("storageRoot", "pathUnderRoot", "flowSlug", "workflowId", "stepId",
                           "snippet")},
        **{k: s for k in ("uri", "type", "displayName", "filename", "contentType",
                          "sourceLabel", "storageBackend", "tier", "createdAt", "updatedAt",
                          "webUrl")},
        "sizeBytes": integer, "score": {"type": ["number", "null"]},
        "tags": {"type": "array", "items": s}}}
    page = {"type": "object", "required": ["items", "total", "limit", "offset", "nextCursor"],
            "properties": {"items": {"type": "array", "items": item_schema},
                           "total": integer, "limit": integer, "offset": integer,
                           "nextCursor": ns, "mode": s,
                           "totalRelation": {"type": "string", "enum": ["eq", "gte"],
                                             "description": "gte: total is a lower bound "
                                             "(past 10,000 matches without exact-total=true)"}}}
    rec = {"type": "object", "required": ["uri", "id", "type", "sizeBytes", "sha256", "webUrl"],
           "properties": {"uri": s, "id": s, "type": s, "sizeBytes": integer, "sha256": s,
                          "version": integer, "webUrl": s, "displayName": s,
                          "contentType": s, "tags": {"type": "array", "items": s}}}

    def ok(schema: dict, desc: str = "OK") -> dict:
        return {"description": desc, "content": {"application/json": {"schema": schema}}}

    errs = {"400": _err("Bad request"), "401": _err("Missing or bad key"),
            "403": _err("Missing scope"), "404": _err("Not found (or another workspace)")}
    sec = [{"bearer": []}]

    def op(summary: str, params: list, responses: dict, body: dict | None = None) -> dict:
        out = {"summary": f"Breyta CLI: {summary}", "security": sec,
               "parameters": [*headers, *params], "responses": {**responses, **errs}}
        if body is not None:
            out["requestBody"] = body
        return out

    filters = [_q(n, d) for n, d in (
        ("type", "file or result"), ("types", "Comma list of file,result"),
        ("accept", "Comma list of MIME patterns, image/* allowed"),
        ("storage-backend", "Backend family"), ("storage-root", "Exact storage root"),
        ("path-prefix", "Folder-aware prefix under the root"), ("tags", "Comma list of tags"))]
    filters.append(_q("exclude-tier", "Tier to leave out",
                      schema={"type": "string", "enum": ["retained", "ephemeral"]}))
    json_body_of = lambda schema: {"required": True, "content": {  # noqa: E731
        "application/json": {"schema": schema}}}
    binary = {"description": "The bytes (a result: its JSON value)",
              "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    wf = {"name": "wf", "in": "path", "required": True, "schema": s,
          "description": "Workflow id, percent-encoded twice"}
    step = {"name": "step", "in": "path", "required": True, "schema": s,
            "description": "Step id, percent-encoded twice"}
    si_schema = {"type": "object", "required": ["op", "uri"], "properties": {
        "op": {"type": "string", "enum": list(SEARCH_INDEX_OPS)}, "uri": s,
        "full": {"type": "boolean"},
        "searchIndex": {"oneOf": [s, {"type": "object", "properties": {
            "text": ns, "sourceLabel": ns, "tags": {"type": "array", "items": s},
            "includeRawContent": {"type": ["boolean", "null"]}}}]}}}
    si_reply = {"type": "object", "required": ["op", "uri", "searchIndex"], "properties": {
        "op": s, "uri": s, "searchIndex": {"type": "object"}, "contentIndexed": {"type": "boolean"},
        "sourceLabel": s, "indexedTags": {"type": "array", "items": s}}}
    return {
        "/api/resources": {"get": op("list, newest first (query: ranked)", [
            *filters, _q("query", "Words that must all match"),
            _q("prefix", "Uri prefix, e.g. res://v1/ws/<ws>/file/"), limit_list, offset, cursor],
            {"200": ok(page)})},
        "/api/resources/search": {"get": op("search", [
            _q("q", "Words, \"phrases\", AND/OR/-, field:value"),
            _q("content-sources", "Comma list of file,result"), *filters,
            _q("mode", "lexical, hybrid or semantic (answered lexically for now)",
               schema={"type": "string", "enum": list(SEARCH_MODES)}),
            _q("keyword-mode", "all, any or balanced (default)",
               schema={"type": "string", "enum": ["all", "any", "balanced"]}),
            _q("limit", "Page size 1..100 (default 10)",
               schema={"type": "integer", "minimum": 1, "maximum": 100}), offset, cursor],
            {"200": ok(page)})},
        "/api/resources/by-uri": {"get": op("get", [uri], {"200": ok(rec)})},
        "/api/resources/content": {"get": op("read", [
            uri, _q("view", "Display hint (ignored)"), _q("limit", "Display hint (ignored)"),
            _q("offset", "Display hint (ignored)")],
            {"200": binary, "206": binary, "304": {"description": "Not modified"},
             "416": _err("Range not satisfiable")})},
        "/api/resources/url": {"get": op("url", [
            uri, _q("ttl", "Seconds, 60..86400 (default 3600)",
                    schema={"type": "integer", "minimum": 60, "maximum": 86400})],
            {"200": ok({"type": "object", "required": ["url", "expiresAt"],
                        "properties": {"url": s, "expiresAt": s}})})},
        "/api/resources/workflow/{wf}": {"get": op("workflow list", [
            wf, limit_list, offset, cursor], {"200": ok(page)})},
        "/api/resources/workflow/{wf}/step/{step}": {"get": op("workflow step", [
            wf, step, limit_list, offset, cursor], {"200": ok(page)})},
        "/api/resources/search-index": {"post": op(
            "search-index show / update / clear / reindex", [wait], {"200": ok(si_reply)},
            json_body_of(si_schema))},
        "/api/files/by-uri": {"delete": op("delete (blob, record and index entry)", [uri, wait], {
            "200": ok({"type": "object", "required": ["uri", "deleted"],
                       "properties": {"uri": s, "deleted": {"type": "boolean"}}})})},
        "/api/files/uploads/init": {"post": op("upload, step 1: reserve the uri", [], {
            "200": ok({"type": "object", "required": ["uri", "upload-session-id", "upload-url"],
                       "properties": {"uri": s, "upload-session-id": s, "upload-url": s}}),
            "409": _err("Exists (no replace-existing)")},
            json_body_of({"type": "object", "required": ["filename"], "properties": {
                "filename": s, "content-type": s, "folder": s,
                "replace-existing": {"type": "boolean"}}}))},
        "/api/files/uploads/direct": {"put": op("upload, step 2: the raw bytes", [
            uri, _q("upload-session-id", "Session (optional: the uri finds it)")], {
            "200": ok({"type": "object", "required": ["uri", "size-bytes"], "properties": {
                "uri": s, "upload-session-id": s, "size-bytes": integer}}),
            "409": _err("Session already completed"), "413": _err("Over the tier limit")},
            {"required": False, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}})},
        "/api/files/uploads/complete": {"post": op("upload, step 3: persist", [wait], {
            "200": ok({"type": "object", "required": ["uri", "content-type", "size-bytes"],
                       "properties": {"uri": s, "content-type": s, "size-bytes": integer}}),
            "409": _err("No bytes yet, or a conflicting upload")},
            json_body_of({"type": "object", "required": ["uri", "upload-session-id"],
                          "properties": {"uri": s, "upload-session-id": s}}))},
    }


EXTRA_PATHS.append(_paths)

"""The OpenAPI 3.1 document of every route (served at /openapi.json)."""
from __future__ import annotations

from typing import Any

from indexer.filterspec import LIST_PARAMS, SEARCH_PARAMS, Param

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}


def _q(name: str, desc: str, required: bool = False, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc,
            "schema": schema or _STR}


def _p(name: str, desc: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": _STR}


WS = _p("ws", "Workspace id")
URI = _q("uri", "Resource uri, res://v1/ws/<ws>/<type>/<id>", required=True)


def _spec_param(p: Param) -> dict:
    """An OpenAPI parameter from the one declarative filter spec (indexer/filterspec)."""
    schema: dict[str, Any] = {"type": "integer"} if p.integer else {"type": "string"}
    if p.minimum is not None:
        schema["minimum"] = p.minimum
    if p.maximum is not None:
        schema["maximum"] = p.maximum
    if p.choices and not p.comma_list:
        schema["enum"] = list(p.choices)
    return _q(p.name, p.help, schema=schema)


FILTERS = [_spec_param(p) for p in LIST_PARAMS]
SEARCH_PARAMETERS = [_spec_param(p) for p in SEARCH_PARAMS]


def _err(desc: str) -> dict:
    return {"description": desc,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema_ref: str, desc: str = "OK") -> dict:
    return {"description": desc,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


ERRORS = {"400": _err("Bad request: a bad spec, path, template, query or cursor, or a query "
                      "parameter the route does not know (code unknown_parameter, naming it)"), "401": _err("Missing or bad key"),
          "403": _err("Missing scope"), "404": _err("Not found")}
SECURED = [{"bearer": []}]


def document(server_url: str = "") -> dict[str, Any]:
    record_props: dict[str, Any] = {
        k: _NSTR for k in ("storage-root", "path-under-root", "slot", "flow", "step",
                           "workflow-id", "expires-at")}
    record_props.update({k: _STR for k in (
        "uri", "id", "workspace", "type", "tier", "display-name", "filename", "content-type",
        "sha256", "storage-backend", "path", "source-label", "created-at", "updated-at",
        "webUrl")})
    record_props.update({"size": {"type": "integer"}, "version": {"type": "integer"},
                         "content-indexed": {"type": "boolean"},
                         "content-truncated": {"type": "boolean"},
                         "tags": {"type": "array", "items": _STR},
                         "extraction": {"type": "object"}, "search-index": {"type": "object"}})
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": _STR, "message": _STR, "details": {"type": "object"}}}}},
        "Record": {"type": "object", "properties": record_props,
                   "required": ["uri", "id", "workspace", "type", "tier", "size", "sha256", "webUrl"]},
        "SearchItem": {"allOf": [{"$ref": "#/components/schemas/Record"}, {
            "type": "object", "properties": {"score": {"type": "number"}, "snippet": _STR}}]},
        "RecordEnvelope": {"type": "object", "required": ["data", "meta"], "properties": {
            "data": {"$ref": "#/components/schemas/Record"}, "meta": {"type": "object"}}},
        "PageEnvelope": {"type": "object", "required": ["data", "meta"], "properties": {
            "data": {"type": "object", "properties": {"items": {
                "type": "array", "items": {"$ref": "#/components/schemas/SearchItem"}}}},
            "meta": {"type": "object", "properties": {
                "total": {"type": "integer"},
                "total-relation": {"type": "string", "enum": ["eq", "gte"],
                                   "description": "gte: total is a lower bound"},
                "count": {"type": "integer"},
                "limit": {"type": "integer"}, "next-cursor": _NSTR,
                "facets": {"type": "object", "description": "Per facet asked: buckets "
                           "[{value, count}] by count, missing (no value), other (left "
                           "out past facet-size), exact",
                           "additionalProperties": {"$ref": "#/components/schemas/Facet"}},
                "mode": {"type": "string", "enum": ["lexical", "semantic", "hybrid"],
                         "description": "What ran (a search with words)"},
                "semantic-pending": {"type": "integer", "description": "Resources of the "
                                     "workspace not embedded yet (semantic, hybrid)"},
                "index": {"type": "object", "description": "Where the index that answered "
                          "stands in the change log", "properties": {
                    "position": {"type": "integer"}, "behind": {"type": "integer"},
                    "lag-seconds": {"type": "number"}}}}}}},
        "Facet": {"type": "object", "properties": {
            "buckets": {"type": "array", "items": {"type": "object", "properties": {
                "value": _STR, "count": {"type": "integer"}}}},
            "missing": {"type": "integer"}, "other": {"type": "integer"},
            "exact": {"type": "boolean"},
            "sample": {"type": "integer", "description": "Present when the counts are "
                       "estimated: how many matching documents were counted (a uniform "
                       "sample of a query matching more than 10,000; exact-total=true "
                       "counts them all)"}}},
        "Envelope": {"type": "object", "required": ["data"], "properties": {
            "data": {}, "meta": {"type": "object"}}},
        "PersistSpec": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["blob", "kv"]},
            "tier": {"type": "string", "enum": ["retained", "ephemeral"]},
            "slot": _STR, "path": _STR, "filename": _STR, "content-type": _STR,
            "display-name": _STR, "params": {"type": "object"}, "flow": _STR, "step": _STR,
            "workflow-id": _STR, "ttl-seconds": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": _STR},
            "search-index": {"$ref": "#/components/schemas/SearchIndex"}}},
        "SearchIndex": {"type": "object", "properties": {
            "text": _NSTR, "tags": {"type": "array", "items": _STR}, "source-label": _NSTR,
            "include-raw-content": {"type": ["boolean", "null"]}}},
        "SlotBinding": {"type": "object", "required": ["root"], "properties": {
            "connection": _STR, "root": _STR}},
        "KvPut": {"type": "object", "required": ["value"], "properties": {
            "value": {}, "ttl": {"type": "integer", "minimum": 1},
            "if-version": {"type": "integer", "minimum": 0}}},
    }
    wait = _q("wait-for", "indexed: answer once this node's searches show the change; "
                          "all: once every live node's searches do; "
                          "durable (the default): once blob and record are saved",
              schema={"type": "string", "enum": ["indexed", "all", "durable"]})
    binary = {"description": "The bytes", "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}
    # An object-storage resource can be fetched from the store itself (docs/s3.md).
    redirect = {"name": "redirect", "in": "query", "required": False,
                "description": "presigned: 307 to a short-lived presigned GET of the object "
                               "(S3 connections; other backends answer with the bytes)",
                "schema": {"type": "string", "enum": ["presigned"]}}
    presigned = {"description": "Redirect to a presigned GET of the object"}
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness: the process answers (details with a "
                                        "service.admin key)", "responses": {
            "200": _ok("Envelope")}}},
        "/readyz": {"get": {"summary": "Readiness: catalog writable, connections reachable, "
                                       "disk free, index present and caught up",
                            "responses": {"200": _ok("Envelope"),
                                          "503": _err("A check failed (named in the message)")}}},
        "/admin/quotas": {"get": {
            "summary": "Every workspace's quota limits (a service.admin key)",
            "security": [{"bearer": []}],
            "responses": {"200": _ok("Envelope"), "401": _err("Missing or bad key"),
                          "403": _err("Key lacks service.admin")}}},
        "/admin/quotas/{ws}": {
            "get": {"summary": "One workspace's limits beside its usage, per tier",
                    "security": [{"bearer": []}], "parameters": [_p("ws", "Workspace")],
                    "responses": {"200": _ok("Envelope"), "401": _err("Missing or bad key"),
                                  "403": _err("Key lacks service.admin")}},
            "put": {"summary": "Set (or with nulls remove) one tier's limits",
                    "security": [{"bearer": []}], "parameters": [_p("ws", "Workspace")],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "required": ["tier"], "properties": {
                            "tier": {"type": "string", "enum": ["retained", "ephemeral"]},
                            "max-bytes": {"type": ["integer", "null"], "minimum": 0},
                            "max-resources": {"type": ["integer", "null"], "minimum": 0}}}}}},
                    "responses": {"200": _ok("Envelope"), "400": _err("Bad body"),
                                  "401": _err("Missing or bad key"),
                                  "403": _err("Key lacks service.admin")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (a service.admin key)",
                             "security": [{"bearer": []}],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {
                                                       "type": "string"}}}},
                                           "401": _err("Missing or bad key"),
                                           "403": _err("Key lacks service.admin")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OpenAPI document", "content": {"application/json": {
                "schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"summary": "This API reference as a page for people (no script, "
                                     "no remote assets)", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": _STR}}}}}},
        "/signed/{token}": {"get": {"summary": "Content through a signed link (no key)",
                                    "parameters": [_p("token", "Signed token"), redirect],
                                    "responses": {"200": binary, "206": binary,
                                                  "307": presigned,
                                                  "403": _err("Tampered or expired"),
                                                  "404": _err("Gone")}}},
        "/v1/{ws}/resources": {
            "post": {"summary": "Persist: raw body streamed, spec in X-Persist-Spec",
                     "security": SECURED,
                     "parameters": [WS, wait,
                                    {"name": "X-Persist-Spec", "in": "header", "required": False,
                                     "description": "Persist spec as JSON",
                                     "schema": _STR},
                                    {"name": "Idempotency-Key", "in": "header", "required": False,
                                     "schema": _STR}],
                     "requestBody": {"required": False, "content": {"application/octet-stream": {
                         "schema": {"type": "string", "format": "binary"}}}},
                     "responses": {"201": _ok("RecordEnvelope", "Created"),
                                   "200": _ok("RecordEnvelope", "Replay or slot rewrite"),
                                   "409": _err("Idempotency conflict"),
                                   "413": _err("Over the tier limit"),
                                   "507": _err("Over the workspace quota (quota_exceeded)"),
                                   **ERRORS}},
            "get": {"summary": "List, newest first", "security": SECURED,
                    "parameters": [WS, *FILTERS],
                    "responses": {"200": _ok("PageEnvelope"), **ERRORS}}},
        "/v1/{ws}/resources/search": {"get": {
            "summary": "Search with filters", "security": SECURED,
            "parameters": [WS, *SEARCH_PARAMETERS],
            "responses": {"200": _ok("PageEnvelope"), **ERRORS,
                          "501": _err("mode=semantic or hybrid where semantic search is "
                                      "turned off (RESOURCES_SEMANTIC=off)")}}},
        "/v1/{ws}/resources/by-uri": {
            "get": {"summary": "The record", "security": SECURED, "parameters": [WS, URI],
                    "responses": {"200": _ok("RecordEnvelope"), **ERRORS}},
            "delete": {"summary": "Delete blob, record and index entry", "security": SECURED,
                       "parameters": [WS, URI, wait],
                       "responses": {"200": _ok("RecordEnvelope"), **ERRORS}}},
        "/v1/{ws}/resources/content": {"get": {
            "summary": "The bytes (Range, ETag, If-None-Match)", "security": SECURED,
            "parameters": [WS, URI, {"name": "Range", "in": "header", "schema": _STR},
                           {"name": "If-None-Match", "in": "header", "schema": _STR}, redirect],
            "responses": {"200": binary, "206": binary, "304": {"description": "Not modified"},
                          "307": presigned,
                          "416": _err("Range not satisfiable"), **ERRORS}}},
        "/v1/{ws}/resources/url": {"get": {
            "summary": "A signed link", "security": SECURED,
            "parameters": [WS, URI, _q("ttl", "Seconds, 60..86400 (default 3600)",
                                       schema={"type": "integer", "minimum": 60, "maximum": 86400})],
            "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/resources/search-index": {
            "get": {"summary": "Show overrides", "security": SECURED, "parameters": [WS, URI],
                    "responses": {"200": _ok("RecordEnvelope"), **ERRORS}},
            "post": {"summary": "Replace (op=replace), merge (op=update) or clear overrides",
                     "security": SECURED,
                     "parameters": [WS, URI, wait, _q("op", "replace, update or clear", schema={
                         "type": "string", "enum": ["replace", "update", "clear"]})],
                     "requestBody": {"required": False, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/SearchIndex"}}}},
                     "responses": {"200": _ok("RecordEnvelope"), **ERRORS}}},
        "/v1/{ws}/workflows/{workflow_id}/resources": {
            "get": {"summary": "What a run produced", "security": SECURED,
                    "parameters": [WS, _p("workflow_id", "Workflow run id"), _q("step", "Step id"),
                                   _q("limit", "Page size", schema={"type": "integer", "minimum": 1,
                                                                   "maximum": 100}),
                                   _q("cursor", "Cursor")],
                    "responses": {"200": _ok("PageEnvelope"), **ERRORS}},
            "delete": {"summary": "A run's cleanup", "security": SECURED,
                       "parameters": [WS, _p("workflow_id", "Workflow run id"), wait,
                                      _q("tier", "Only this tier", schema={
                                          "type": "string", "enum": ["retained", "ephemeral"]}),
                                      _q("dry-run", "true: only list what would be deleted "
                                                    "(data.would-delete)",
                                         schema={"type": "boolean"})],
                       "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/me": {"get": {"summary": "The key's own id, workspace and scopes (the CLI's "
                                      "default workspace in remote mode)",
                           "security": SECURED,
                           "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/usage": {"get": {"summary": "Bytes and counts per tier and root",
                                   "security": SECURED, "parameters": [WS],
                                   "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/slots/{slot}": {"put": {
            "summary": "Bind a slot (workspace.admin)", "security": SECURED,
            "parameters": [WS, _p("slot", "Slot name")],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SlotBinding"}}}},
            "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/slots": {"get": {"summary": "List slots", "security": SECURED,
                                   "parameters": [WS],
                                   "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/keys": {"get": {"summary": "List the workspace's API keys, never their "
                                             "secrets (workspace.admin)",
                                  "security": SECURED, "parameters": [WS],
                                  "responses": {"200": _ok("Envelope"), **ERRORS}}},
        "/v1/{ws}/keys/{key_id}": {"delete": {
            "summary": "Revoke a key: its requests are 401 and its web sessions end "
                       "(workspace.admin)", "security": SECURED,
            "parameters": [WS, _p("key_id", "Key id (the part after rk_)")],
            "responses": {"200": _ok("Envelope"), **ERRORS}}},
    }
    for extra in EXTRA_PATHS:
        paths.update(extra())
    return {"openapi": "3.1.0",
            "info": {"title": "Resource search and indexing service", "version": "0.1.0",
                     "description": "Persist workflow outputs as res:// refs; search, list, "
                                    "read and sign links to them."},
            "servers": [{"url": server_url or "/"}],
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}}}}


#: Other modules (KV store, Breyta face) register their paths here.
EXTRA_PATHS: list = []

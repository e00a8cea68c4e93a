"""`/docs`: the HTTP API reference, rendered on the server from the OpenAPI document.

Plain HTML with no script and no asset from elsewhere: the page works on a machine
without internet access, and it can never disagree with `/openapi.json`, being made
from the same dict at request time.
"""
from __future__ import annotations

from html import escape
from typing import Any

METHODS = ("get", "post", "put", "delete", "patch")
STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#06c}.post{color:#080}.put{color:#a60}.delete{color:#c00}
table{border-collapse:collapse;width:100%}td,th{border-top:1px solid #eee;padding:.2rem .5rem;
text-align:left;vertical-align:top}nav a{margin-right:1rem}
"""


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    text = str(schema.get("type", ""))
    if "enum" in schema:
        text += ": " + " | ".join(map(str, schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        text += f" ({schema.get('minimum', '')}..{schema.get('maximum', '')})"
    return text


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}"
        f"{' (required)' if p.get('required') else ''}</td>"
        f"<td>{escape(_schema_text(p.get('schema', {})))}</td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in op.get("parameters", []))
    params = (f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr>"
              f"{rows}</table>") if rows else ""
    body = ""
    content = (op.get("requestBody") or {}).get("content") or {}
    for media, spec in content.items():
        body += (f"<p>body: <code>{escape(media)}</code> "
                 f"{escape(_schema_text(spec.get('schema', {})))}</p>")
    responses = ", ".join(f"<b>{escape(code)}</b> {escape(r.get('description', ''))}"
                          for code, r in op.get("responses", {}).items())
    key = " · needs <code>Authorization: Bearer rk_…</code>" if op.get("security") else ""
    return (f'<div class="op"><span class="m {method}">{method}</span> '
            f"<code>{escape(path)}</code> — {escape(op.get('summary', ''))}{key}"
            f"{params}{body}<p>answers: {responses}</p></div>")


def render(doc: dict[str, Any]) -> str:
    """The whole page for one OpenAPI document."""
    info = doc.get("info", {})
    groups: dict[str, list[str]] = {}
    for path, ops in doc.get("paths", {}).items():
        group = "Breyta CLI face (/api)" if path.startswith("/api/") else \
            "Workspace routes (/v1)" if path.startswith("/v1/") else "Service"
        for method in METHODS:
            if method in ops:
                groups.setdefault(group, []).append(_operation(path, method, ops[method]))
    sections = "".join(f"<h2 id=\"g{i}\">{escape(name)}</h2>{''.join(ops)}"
                       for i, (name, ops) in enumerate(groups.items()))
    nav = "".join(f'<a href="#g{i}">{escape(name)}</a>' for i, name in enumerate(groups))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(info.get('title', 'API'))}</title><style>{STYLE}</style></head>"
            f"<body><h1>{escape(info.get('title', 'API'))} <small>{escape(str(info.get('version', '')))}"
            f"</small></h1><p>{escape(info.get('description', ''))}</p>"
            f"<p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI "
            f"{escape(str(doc.get('openapi', '')))}). Success is <code>{{\"data\", \"meta\"}}</code>, "
            f"failure <code>{{\"error\": {{\"code\", \"message\"}}}}</code>.</p>"
            f"<nav>{nav}</nav>{sections}</body></html>")

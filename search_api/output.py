"""Printing: the JSON envelope, or a table for people at a terminal."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from storage.errors import ResourceError

PAGE_COLUMNS = ("uri", "type", "tier", "size", "content-type", "path")


def default_format() -> str:
    return "table" if sys.stdout.isatty() else "json"


def emit(env: dict, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(env, indent=2, ensure_ascii=False))
        return
    data = env.get("data")
    if isinstance(data, dict) and "items" in data:
        _table(data["items"], env.get("meta", {}))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, ensure_ascii=False)
            click.echo(f"{k.ljust(width)}  {'' if v is None else v}")
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _table(items: list[dict], meta: dict) -> None:
    if not items:
        click.echo("(no results)")
    else:
        cols = [c for c in PAGE_COLUMNS if any(c in it for it in items)]
        if not cols:
            cols = list(items[0])[:6]
        if any("score" in it for it in items):
            cols.append("score")
        rows = [[_cell(it.get(c)) for c in cols] for it in items]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)))
        for r in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if "total" in meta:
        more = f"; next: --cursor {meta['next-cursor']}" if meta.get("next-cursor") else ""
        at_least = "+" if meta.get("total-relation") == "gte" else ""   # a lower bound
        click.echo(f"{len(items)} of {meta['total']}{at_least}{more}")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def emit_error(exc: ResourceError, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(exc.to_json(), ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {exc.message} [{exc.code}]", err=True)

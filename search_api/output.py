"""Printing: the JSON envelope for programs, tables that fit the terminal for people.

JSON output is the API envelope unchanged (scripts and jq recipes rely on it). Table
output is for reading: human sizes, ages, yes/no, names before ids, long values cut in
the middle with a hint to ask for ``--format json``; every line fits the terminal width
(``$COLUMNS`` or the terminal's own).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import time
from datetime import datetime
from typing import Any, Callable

import click

from storage.errors import ResourceError

JSON_HINT = "(cut to fit; --format json shows everything)"
MIN_WIDTH = 40


FORMATS = ("table", "json", "uri")


def default_format() -> str:
    """$RESOURCES_FORMAT, else table on a terminal and json in a pipe."""
    chosen = os.environ.get("RESOURCES_FORMAT")
    if chosen in FORMATS:
        return chosen
    return "table" if sys.stdout.isatty() else "json"


def width() -> int:
    return max(MIN_WIDTH, shutil.get_terminal_size((100, 24)).columns)


def emit(env: dict, fmt: str) -> None:
    if fmt == "uri":
        # For shell variables and loops: URI=$(resources search revenue --format uri)
        data = env.get("data")
        items = data.get("items") if isinstance(data, dict) else None
        found = [it["uri"] for it in items if "uri" in it] if isinstance(items, list) else \
            [data["uri"]] if isinstance(data, dict) and "uri" in data else None
        if found is not None:
            for uri in found:
                click.echo(uri)
            return
        fmt = "json"
    if fmt == "json":
        click.echo(json.dumps(env, indent=2, ensure_ascii=False))
        return
    for line in render(env, width()):
        click.echo(line)


def emit_error(exc: ResourceError, fmt: str) -> None:
    if fmt != "table":
        click.echo(json.dumps(exc.to_json(), ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {exc.message} [{exc.code}]", err=True)


# -- rendering --------------------------------------------------------------------------
def render(env: dict, cols: int) -> list[str]:
    """The table lines of an envelope, each at most ``cols`` characters."""
    data = env.get("data")
    meta = env.get("meta") or {}
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        items = data["items"]
        lines = _items(items, cols)
        if "total" in meta:
            at_least = "+" if meta.get("total-relation") == "gte" else ""   # a lower bound
            lines.append(fit(f"{len(items)} of {meta['total']}{at_least}", cols))
        if meta.get("next-cursor"):
            # Never cut: the cursor must be copied whole.
            lines.append(f"next page: --cursor {meta['next-cursor']}")
        return lines
    if isinstance(data, dict):
        return _record(data, cols)
    return [fit(json.dumps(data, ensure_ascii=False), cols)]


def _items(items: list[dict], cols: int) -> list[str]:
    if not items:
        return ["(no results)"]
    first = items[0]
    if "uri" in first:
        return _resources(items, cols)
    if "key" in first and "value" in first:
        return table(["KEY", "VER", "VALUE", "EXPIRES"],
                     [[it.get("key"), it.get("version"), _compact(it.get("value")),
                       age(it.get("expires-at"), future=True)] for it in items],
                     cols, flex=(2, 0))
    if "slot" in first and "root" in first:
        return table(["SLOT", "CONNECTION", "ROOT"],
                     [[it.get("slot"), it.get("connection"), it.get("root")] for it in items],
                     cols, flex=(2, 0))
    keys = list(first)[:6]
    return table([k.upper() for k in keys], [[it.get(k) for k in keys] for it in items], cols,
                 flex=tuple(range(len(keys))))


def _resources(items: list[dict], cols: int) -> list[str]:
    """One row per resource, its uri on the next line (to copy), a snippet under a hit."""
    rows = [[it.get("display-name") or it.get("filename") or "-", it.get("type"),
             human_size(it.get("size")), it.get("tier"), it.get("step") or "-",
             age(it.get("updated-at") or it.get("created-at"))] for it in items]
    lines = table(["NAME", "TYPE", "SIZE", "TIER", "STEP", "AGE"], rows, cols, flex=(0, 4),
                  extra=[_under(it, cols) for it in items])
    return lines


def _under(item: dict, cols: int) -> list[str]:
    out = ["  " + fit_middle(str(item.get("uri")), cols - 2)]
    snippet = item.get("snippet")
    if snippet:
        out.append("  " + fit("… " + plain_snippet(snippet), cols - 2))
    return out


def plain_snippet(snippet: str) -> str:
    """The server's highlighted HTML excerpt as one plain line (matches in «»)."""
    text = snippet.replace("<b>", "«").replace("</b>", "»")
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return " ".join(text.split())


def table(headers: list[str], rows: list[list[Any]], cols: int, flex: tuple[int, ...] = (),
          extra: list[list[str]] | None = None) -> list[str]:
    """Left-aligned columns two spaces apart; the ``flex`` columns shrink (cut in the
    middle) until the line fits ``cols``; ``extra`` lines follow each row."""
    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    over = sum(widths) + 2 * (len(widths) - 1) - cols
    for i in flex:
        if over <= 0:
            break
        floor = max(len(headers[i]), 6)
        cut = min(over, widths[i] - floor)
        if cut > 0:
            widths[i] -= cut
            over -= cut
    if over > 0:                                 # still too wide: cut the last column
        widths[-1] = max(1, widths[-1] - over)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for n, r in enumerate(cells):
        lines.append("  ".join(fit_middle(v, w).ljust(w) for v, w in zip(r, widths)).rstrip())
        if extra:
            lines.extend(extra[n])
    return [fit(line, cols) for line in lines]


def _record(data: dict, cols: int) -> list[str]:
    keyw = min(max((len(k) for k in data), default=0), 24)
    room = max(10, cols - keyw - 2)
    lines, cut = [], False
    for k, v in data.items():
        if k == "size" and isinstance(v, int):
            text = f"{human_size(v)} ({v:,} bytes)"
        else:
            text = cell(v)
        if len(text) > room:
            # A path or link keeps both ends; JSON keeps its start.
            text = fit(text, room) if isinstance(v, (dict, list)) else fit_middle(text, room)
            cut = True
        lines.append(f"{k[:keyw].ljust(keyw)}  {text}".rstrip())
    if cut:
        lines.append(fit(JSON_HINT, cols))
    return lines


# -- cells ------------------------------------------------------------------------------
def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return ", ".join(v)
    if isinstance(v, (dict, list)):
        return _compact(v)
    return " ".join(str(v).split()) if "\n" in str(v) else str(v)


def _compact(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def human_size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def age(stamp: Any, future: bool = False, now: Callable[[], float] = time.time) -> str:
    """``3m``, ``5h``, ``2d`` since (or, for ``future``, until) an RFC 3339 time."""
    if not isinstance(stamp, str):
        return "-"
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return stamp
    secs = int((t - now()) if future else (now() - t))
    if secs < 0:
        return "now" if not future else "past"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def fit(text: str, cols: int) -> str:
    return text if len(text) <= cols else text[:max(cols - 1, 0)] + "…"


def fit_middle(text: str, cols: int) -> str:
    """Cut in the middle: the start and the end of a path or uri say the most."""
    if len(text) <= cols:
        return text
    if cols < 5:
        return text[:cols]
    head = (cols - 1) // 2
    tail = cols - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]

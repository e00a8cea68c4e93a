"""A deterministic benchmark corpus: document ``i`` is always the same bytes and spec.

Every document is generated from ``random.Random(SEED, i)`` alone, so any range of the
corpus can be produced independently (by several loader processes) and regenerated
identically by a later run. The mix (by weight, see ``KINDS``): plain text, Markdown,
JSON, CSV, a few hand-written PDFs, PNG/JPEG images, ZIP archives and opaque binary
blobs, plus `kv` results (JSON values); sizes are log-normal (most are small, a few
reach ~200 KB). Resources are spread over four workspaces (one large), slotted and
unslotted locations with nested paths (``exports/2026/03/...``, including the
``exports/20261`` trap for folder-aware prefixes), both tiers, tags, flows, steps and
workflow ids.

The vocabulary follows a Zipf law (s = 1.07 over ~30k words): the first words appear in
most documents, the tail in a handful. ``QUERY_WORDS`` names the words the search
benchmark uses.
"""
from __future__ import annotations

import importlib.util
import io
import json
import math
import random
import struct
import zipfile
import zlib
from bisect import bisect
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator

SEED = 20260117
CORPUS_VERSION = 1
VOCAB_SIZE = 30_000
ZIPF_S = 1.07

#: Workspaces and their share of the corpus; the search benchmark queries the first.
WORKSPACES = [("ws-acme", 0.60), ("ws-globex", 0.25), ("ws-initech", 0.10),
              ("ws-umbrella", 0.05)]
MAIN_WS = "ws-acme"
#: Slots bound in every workspace: name -> root template.
SLOTS = {"archive": "reports/{short}", "lake": "lake/{short}/raw"}

#: Real words at the head of the vocabulary (rank order), then generated words follow.
HEAD_WORDS = (
    "data report value customer order total account service system result status "
    "project team update review summary record number date region market product "
    "analysis model metric batch export import pipeline stage output input quarterly "
    "revenue invoice shipment forecast budget contract payment supplier inventory "
    "warehouse ledger audit policy incident ticket release deploy cluster server "
    "network latency throughput schedule meeting agenda minutes draft approval "
    "compliance risk portfolio dataset training evaluation accuracy precision recall"
).split()

TAGS = [("urgent", 4), ("draft", 8), ("final", 10), ("q1", 5), ("q2", 5), ("q3", 5),
        ("q4", 5), ("finance", 6), ("legal", 3), ("ops", 6), ("ml", 4), ("customer", 5),
        ("internal", 7), ("public", 2)]
FLOWS = [("ingest", 5), ("etl", 4), ("reporting", 3), ("ml-train", 2), ("billing", 2)]
STEPS = [("extract", 5), ("transform", 4), ("load", 3), ("render", 3), ("export", 2)]

#: kind -> weight. ``kv`` is a result resource (type kv); the others are blobs.
KINDS = [("txt", 28), ("md", 14), ("json", 9), ("csv", 11), ("log", 5), ("kv", 12),
         ("pdf", 1.5), ("png", 4), ("jpg", 1.5), ("zip", 1), ("bin", 5)]
EXT = {"txt": "txt", "md": "md", "json": "json", "csv": "csv", "log": "log", "kv": "json",
       "pdf": "pdf", "png": "png", "jpg": "jpg", "zip": "zip", "bin": "bin"}

PHRASE = ("quarterly", "revenue")   # injected as a phrase into ~3% of text documents
#: The query words of the search benchmark (their ranks make them common / mid / rare).
QUERY_WORDS = {
    "common": "data",               # rank 0: in most text documents
    "or_a": "invoice", "or_b": "shipment",
    "filtered": "report",           # with storage-root + path-prefix filters
    "field_tag": "urgent",          # tags:urgent (a field:value query)
}
RARE_RANK = 12_000                  # a tail word: a few documents per 10k


@dataclass
class Doc:
    i: int
    workspace: str
    kind: str
    spec: dict[str, Any]
    body: bytes = field(repr=False)


# -- vocabulary --------------------------------------------------------------------------
_SYL = ("ka ri to ne sa lu mi po ve da ro ki na te su lo ma pi ze fo ga bu ni "
        "tra sel dor vin mar quel bran fis gor lum pex tor zan wil cre dru hal").split()


@lru_cache(maxsize=1)
def vocabulary() -> tuple[list[str], list[float]]:
    """(words in rank order, cumulative Zipf weights)."""
    rng = random.Random(SEED)
    words = list(HEAD_WORDS)
    seen = set(words) | {t for t, _ in TAGS}
    while len(words) < VOCAB_SIZE:
        w = "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    weights = [1.0 / (r + 2.7) ** ZIPF_S for r in range(len(words))]
    return words, list(accumulate(weights))


def rare_word() -> str:
    return vocabulary()[0][RARE_RANK]


def _words(rng: random.Random, n: int) -> list[str]:
    words, cum = vocabulary()
    return rng.choices(words, cum_weights=cum, k=n)


def _pick(rng: random.Random, table: list[tuple[str, float]]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def _lognormal_int(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(rng.lognormvariate(math.log(median), sigma))))


def _sentences(rng: random.Random, n_words: int, phrase: bool) -> str:
    ws = _words(rng, n_words)
    if phrase and n_words >= 4:
        at = rng.randrange(n_words - 1)
        ws[at:at + 2] = list(PHRASE)
    lines, line = [], []
    for k, w in enumerate(ws, 1):
        line.append(w)
        if k % 12 == 0:
            lines.append(" ".join(line) + ".")
            line = []
    if line:
        lines.append(" ".join(line) + ".")
    return "\n".join(lines) + "\n"


# -- binary formats ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def _fixtures_module():
    path = Path(__file__).resolve().parent.parent / "fixtures" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("bench_fixture_maker", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _pdf(rng: random.Random, title: str) -> bytes:
    pages = []
    for _ in range(rng.randint(1, 3)):
        pages.append([" ".join(_words(rng, 9)) for _ in range(rng.randint(4, 12))])
    if rng.random() < 0.1:
        pages[0].insert(0, " ".join(PHRASE) + " summary")
    return _fixtures_module().build_pdf(pages, title=title)


def _png(rng: random.Random, size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    w = h = 64
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    noise = rng.randbytes(max(size - 60, 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", noise) + chunk(b"IEND", b"")


def _jpg(rng: random.Random, size: int) -> bytes:
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return head + rng.randbytes(max(size - len(head) - 2, 16)) + b"\xff\xd9"


def _zip(rng: random.Random, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("payload/notes.txt", date_time=(2026, 1, 1, 0, 0, 0))
        zf.writestr(info, _sentences(rng, max(size // 7, 20), False))
        info = zipfile.ZipInfo("payload/blob.bin", date_time=(2026, 1, 1, 0, 0, 0))
        zf.writestr(info, rng.randbytes(max(size // 2, 16)))
    return buf.getvalue()


# -- one document ------------------------------------------------------------------------
def _ws(rng: random.Random) -> str:
    return rng.choices([w for w, _ in WORKSPACES], weights=[p for _, p in WORKSPACES])[0]


def slot_root(workspace: str, slot: str) -> str:
    return SLOTS[slot].format(short=workspace.removeprefix("ws-"))


def _slot_path(rng: random.Random) -> str:
    r = rng.random()
    year = 2026 if rng.random() < 0.7 else 2025
    month = rng.randint(1, 12)
    if r < 0.45:
        p = f"exports/{year}/{month:02d}"
        if rng.random() < 0.4:
            p += f"/region-{rng.choice(['north', 'south', 'east', 'west'])}/batch-{rng.randint(1, 40)}"
        return p
    if r < 0.50:
        return f"exports/{year}{rng.randint(1, 3)}"          # exports/20261: prefix trap
    if r < 0.70:
        return f"monthly/{year}-{month:02d}"
    if r < 0.85:
        return f"inbox/{rng.choice(['vendors', 'customers', 'partners'])}"
    return f"archive/{year}/q{(month - 1) // 3 + 1}/{rng.choice(['closed', 'open'])}"


def _body(rng: random.Random, kind: str, i: int, max_bytes: int | None) -> bytes:
    cap_words = 30_000 if max_bytes is None else max(max_bytes // 8, 20)
    phrase = rng.random() < 0.03
    if kind in ("txt", "log"):
        n = _lognormal_int(rng, 90, 1.1, 3, cap_words)
        text = _sentences(rng, n, phrase)
        if kind == "log":
            text = "".join(f"2026-01-{(k % 28) + 1:02d}T10:{k % 60:02d}:00Z INFO {line}\n"
                           for k, line in enumerate(text.splitlines()))
        return text.encode()
    if kind == "md":
        n = _lognormal_int(rng, 120, 1.0, 10, cap_words)
        title = " ".join(_words(rng, 4)).title()
        parts = [f"# {title}\n"]
        body = _sentences(rng, n, phrase).splitlines()
        for k, line in enumerate(body):
            if k % 6 == 0:
                parts.append(f"\n## {' '.join(_words(rng, 3)).title()}\n")
            parts.append(f"- {line}\n" if k % 3 == 0 else line + "\n")
        return "".join(parts).encode()
    if kind == "csv":
        rows = _lognormal_int(rng, 25, 1.0, 3, cap_words // 6)
        out = ["id,name,category,amount,region,note"]
        for r in range(rows):
            w = _words(rng, 4)
            out.append(f"{r},{w[0]},{w[1]},{rng.randint(1, 99999) / 100},{w[2]},{w[3]}")
        return ("\n".join(out) + "\n").encode()
    if kind in ("json", "kv"):
        items = _lognormal_int(rng, 8, 1.0, 1, cap_words // 12)
        value = {"id": i, "status": rng.choice(["ok", "failed", "pending"]),
                 "summary": " ".join(_words(rng, 12)),
                 "items": [{"name": " ".join(_words(rng, 2)), "qty": rng.randint(1, 500),
                            "note": " ".join(_words(rng, 6))} for _ in range(items)]}
        if phrase:
            value["headline"] = " ".join(PHRASE)
        return json.dumps(value).encode()
    size = _lognormal_int(rng, 4096, 1.3, 64, 256 * 1024 if max_bytes is None else max_bytes)
    if kind == "pdf":
        return _pdf(rng, " ".join(_words(rng, 3)))
    if kind == "png":
        return _png(rng, size)
    if kind == "jpg":
        return _jpg(rng, size)
    if kind == "zip":
        return _zip(rng, size)
    return rng.randbytes(size)


def document(i: int, max_bytes: int | None = None) -> Doc:
    """Document ``i`` of the corpus (``max_bytes``: the small profile, for ingest)."""
    rng = random.Random(SEED * 1_000_003 + i)
    ws = _ws(rng)
    kind = _pick(rng, KINDS)
    name = "-".join(_words(rng, 2))
    filename = f"{name}-{i:07d}.{EXT[kind]}"
    spec: dict[str, Any] = {"type": "kv" if kind == "kv" else "blob", "filename": filename}
    spec["tier"] = "ephemeral" if rng.random() < 0.12 else "retained"
    if rng.random() < 0.55:
        slot = "archive" if rng.random() < 0.7 else "lake"
        spec["slot"] = slot
        spec["path"] = _slot_path(rng)
    else:
        spec["flow"] = _pick(rng, FLOWS)
        spec["step"] = _pick(rng, STEPS)
        if rng.random() < 0.5:
            spec["path"] = f"runs/{rng.randint(2025, 2026)}/{rng.randint(1, 52):02d}"
    if rng.random() < 0.7:
        spec["workflow-id"] = f"wf-{rng.randrange(5000):05d}"
    n_tags = rng.choices([0, 1, 2, 3], weights=[30, 40, 20, 10])[0]
    tags = sorted({_pick(rng, TAGS) for _ in range(n_tags)})
    if tags:
        spec["tags"] = tags
    if rng.random() < 0.2:
        spec["display-name"] = " ".join(_words(rng, 3)).title()
    return Doc(i, ws, kind, spec, _body(rng, kind, i, max_bytes))


def documents(start: int, stop: int, max_bytes: int | None = None) -> Iterator[Doc]:
    for i in range(start, stop):
        yield document(i, max_bytes)


def bind_slots(service) -> None:
    """Bind every corpus slot in every workspace (idempotent)."""
    for ws, _ in WORKSPACES:
        for slot in SLOTS:
            service.bind_slot(ws, slot, slot_root(ws, slot))


def describe(n: int = 2000) -> dict[str, Any]:
    """Mix statistics of the first ``n`` documents (for the report)."""
    kinds: dict[str, int] = {}
    sizes = []
    for d in documents(0, n):
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
        sizes.append(len(d.body))
    sizes.sort()
    return {"kinds": kinds, "median_bytes": sizes[len(sizes) // 2],
            "mean_bytes": sum(sizes) // len(sizes), "max_bytes": sizes[-1]}


def _self_check() -> None:   # pragma: no cover - a manual aid
    words, cum = vocabulary()
    print(len(words), words[:10], rare_word(), bisect(cum, cum[-1] / 2))
    print(describe())


if __name__ == "__main__":   # pragma: no cover
    _self_check()

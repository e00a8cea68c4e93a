"""How a resource's text is cut into chunks for embedding (docs/search.md): windows of
word-piece tokens with overlap, each prefixed by the display name and path as context,
with a cap per resource."""
from __future__ import annotations

import re
from dataclasses import dataclass

from storage.records import Resource

from .schema import effective_content

#: Content tokens per chunk window (plus the context and two special tokens: <= 256).
WINDOW_TOKENS = 200
OVERLAP_TOKENS = 40
#: Tokens of display name + path kept as each chunk's context.
CONTEXT_TOKENS = 48
#: Chunks per resource at most (documented in docs/search.md).
MAX_CHUNKS = 16
#: Characters of text looked at for chunking (MAX_CHUNKS windows need far fewer).
MAX_CHARS = 60_000

@dataclass
class ChunkText:
    start: int
    end: int
    text: str            # what is embedded: context + the window


_ID_SEGMENT = re.compile(r"^[0-9a-f]{16,}$|^_$")


def context_of(res: Resource) -> str:
    """Display name and path: the path without generated segments (hex ids, ``_``),
    which only cost tokens and mean nothing to the model."""
    name = res.display_name or res.filename or ""
    path = "/".join(s for s in (res.path or "").split("/") if not _ID_SEGMENT.match(s))
    return f"{name} ({path})" if path else name


def chunk_resource(res: Resource, extracted: str, tokenizer) -> list[ChunkText]:
    """The chunks of one resource (at least one: name and path when there is no text)."""
    content, _ = effective_content(res, extracted)
    content = content[:MAX_CHARS]
    context = context_of(res)
    ctx_enc = tokenizer.encode(context, add_special_tokens=False)
    if len(ctx_enc.ids) > CONTEXT_TOKENS:
        context = context[:ctx_enc.offsets[CONTEXT_TOKENS - 1][1]]
    if not content.strip():
        return [ChunkText(0, 0, context)]
    enc = tokenizer.encode(content, add_special_tokens=False)
    offsets = enc.offsets
    if not offsets:
        return [ChunkText(0, 0, context)]
    out: list[ChunkText] = []
    step = WINDOW_TOKENS - OVERLAP_TOKENS
    i = 0
    while i < len(offsets) and len(out) < MAX_CHUNKS:
        window = offsets[i:i + WINDOW_TOKENS]
        start, end = window[0][0], window[-1][1]
        out.append(ChunkText(start, end, f"{context}\n{content[start:end]}"))
        if i + WINDOW_TOKENS >= len(offsets):
            break
        i += step
    return out

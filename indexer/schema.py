"""The Tantivy schema (CONTRACT: indexing rules) and the one function that builds a document.

Bump SCHEMA_VERSION whenever fields change: the version sits beside the index and a
mismatch makes the next start rebuild the index from the catalog.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import tantivy

from storage.layout import folder_prefixes
from storage.records import Resource

SCHEMA_VERSION = 7      # 4: facet fields fast, expires not fast; 5: updated, size, name_sort
                        # 6: partitions (one index per big workspace, indexer/partitions.py)
                        # 7: sample (facets of broad queries from a sample, facets.py)

#: Documents fall into this many sample buckets by a hash of their id (``sample_bucket``).
SAMPLE_BUCKETS = 1024

#: Exact (raw-tokenized) fields: filters and `field:value` terms, case-sensitive.
EXACT_FIELDS = ("workspace", "type", "tier", "storage_backend", "storage_root",
                "path_under_root", "path_prefix", "content_type", "content_major", "flow",
                "step", "workflow_id", "slot", "tag", "uri")
#: Exact fields that are also fast (columnar): one-pass facet counts (indexer/facets.py)
#: aggregate on them. Version 4 added them.
FAST_FIELDS = ("type", "tier", "storage_root", "slot", "content_major", "tag", "workflow_id")
#: Tokenized free-text fields, searched by plain words (with their boosts).
TEXT_FIELDS = {"display_name": 2.0, "filename": 2.0, "path": 1.0, "content": 1.0,
               "tags": 1.5, "source_label": 1.0}
#: Order in which a snippet is looked for: content first, then what else matched.
SNIPPET_FIELDS = ("content", "display_name", "filename", "path", "tags", "source_label")


def build_schema(extra: Callable[[tantivy.SchemaBuilder], Any] | None = None
                 ) -> tantivy.Schema:
    """The schema; ``extra`` may add fields (bench/tenancy.py compares variants)."""
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    for name in EXACT_FIELDS:
        sb.add_text_field(name, stored=False, tokenizer_name="raw", fast=name in FAST_FIELDS)
    for name in TEXT_FIELDS:
        sb.add_text_field(name, stored=True, tokenizer_name="default",
                          index_option="position")
    # Newest-first order and keyset cursors: a unique, increasing write sequence.
    sb.add_integer_field("seq", stored=True, indexed=True, fast=True)
    # Expired resources drop out of search at once, before gc removes them: a MustNot of
    # the *expired* range. Indexed but deliberately not fast: Tantivy then answers the
    # range from the term dictionary (the few expired, unswept documents) instead of
    # scanning a column of every document per query (version 4; bench/tenancy.py).
    sb.add_integer_field("expires", stored=False, indexed=True, fast=False)
    # since/until, min-size/max-size and the sorts other than relevance and newest.
    sb.add_integer_field("updated", stored=False, indexed=True, fast=True)
    sb.add_integer_field("size", stored=False, indexed=True, fast=True)
    sb.add_text_field("name_sort", stored=False, fast=True, tokenizer_name="raw")
    # A stable pseudo-random bucket per document: the facets of a query matching more than
    # the exact-total threshold are counted on the buckets below some bound (facets.py),
    # a uniform sample Tantivy finds through the term dictionary.
    sb.add_integer_field("sample", stored=False, indexed=True, fast=False)
    if extra is not None:
        extra(sb)
    return sb.build()


def effective_content(res: Resource, extracted: str) -> tuple[str, bool]:
    """(content text for the index, whether raw extracted text went in)."""
    ov = res.search_index
    include_raw = ov.include_raw_content
    if include_raw is None:
        include_raw = res.tier == "retained"
    if ov.text is not None:
        return ov.text, False
    if include_raw and extracted:
        return extracted, True
    return "", False


def indexed_tags(res: Resource) -> list[str]:
    seen: dict[str, None] = {}
    for tag in [*res.tags, *res.search_index.tags]:
        seen.setdefault(tag, None)
    return list(seen)


NEVER = 2**62


def make_document(res: Resource, extracted: str) -> tantivy.Document:
    content, _ = effective_content(res, extracted)
    tags = indexed_tags(res)
    major = res.content_type.split("/", 1)[0].lower() if res.content_type else ""
    doc = tantivy.Document()
    doc.add_text("id", res.id)
    exact = {
        "workspace": res.workspace, "type": res.type, "tier": res.tier,
        "storage_backend": res.storage_backend, "storage_root": res.storage_root,
        "path_under_root": res.path_under_root,
        "content_type": (res.content_type or "").split(";")[0].strip().lower(),
        "content_major": major, "flow": res.flow, "step": res.step,
        "workflow_id": res.workflow_id, "slot": res.slot, "uri": res.uri,
    }
    for name, value in exact.items():
        if value:
            doc.add_text(name, value)
    prefixes = folder_prefixes(res.path_under_root)
    if res.path_under_root:
        prefixes.append(res.path_under_root)
    for prefix in prefixes:
        doc.add_text("path_prefix", prefix)
    for tag in tags:
        doc.add_text("tag", tag)
    doc.add_text("display_name", res.display_name)
    doc.add_text("filename", res.filename)
    doc.add_text("path", res.path)
    doc.add_text("content", content)
    doc.add_text("tags", " ".join(tags))
    doc.add_text("source_label", res.source_label)
    doc.add_integer("seq", res.seq)
    doc.add_integer("expires", int(res.expires_at) if res.expires_at else NEVER)
    doc.add_integer("updated", int(res.updated_at))
    doc.add_integer("size", int(res.size))
    doc.add_text("name_sort", (res.display_name or res.filename or "").lower())
    doc.add_integer("sample", sample_bucket(res.id))
    return doc


def sample_bucket(id_: str) -> int:
    """The document's sample bucket: CRC-32 of its id (stable across processes and
    versions, unlike ``hash``), modulo SAMPLE_BUCKETS."""
    return zlib.crc32(id_.encode()) % SAMPLE_BUCKETS

"""The query parameters of search and list, declared once.

One list drives every face: ``Filters.from_params`` reads these names, the HTTP routes
refuse any other parameter (400 naming it), the OpenAPI document lists them with their
help and choices, and the CLI turns each into an option. Adding a filter here makes it
appear everywhere, so the faces cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from storage.errors import BadRequest

TYPES = ("file", "result")
TIERS = ("retained", "ephemeral")
KEYWORD_MODES = ("all", "any", "balanced")
#: lexical: BM25 over words (the default); semantic: nearest chunk embeddings;
#: hybrid: reciprocal rank fusion of both (docs/search.md).
SEARCH_MODES = ("lexical", "semantic", "hybrid")
#: relevance: best match first (the default with words); newest: most recently written
#: first (the default without); oldest; name: A to Z; size: largest first.
SORTS = ("relevance", "newest", "oldest", "name", "size")
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class Param:
    """One query parameter: its wire name (kebab-case) and how to describe it."""
    name: str
    help: str
    choices: tuple[str, ...] = ()
    #: Several values allowed (repeat the parameter or give a comma list).
    repeatable: bool = False
    #: A comma list whose every item must be one of ``choices``.
    comma_list: bool = False
    #: Another spelling of ``alias_of``: accepted on the wire, not offered by the CLI.
    alias_of: str | None = None
    integer: bool = False
    minimum: int | None = None
    maximum: int | None = None
    metavar: str = "TEXT"

    @property
    def option(self) -> str:
        """The CLI option name (``--storage-root``)."""
        return f"--{self.name}"


FILTERS: tuple[Param, ...] = (
    Param("type", "Only this resource type: file or result (comma list).",
          choices=TYPES, comma_list=True, metavar="file|result"),
    Param("types", "Alias of type.", choices=TYPES, comma_list=True, alias_of="type"),
    Param("content-sources", "Like type, as the search of a workflow step names it.",
          choices=TYPES, comma_list=True, metavar="file|result"),
    Param("tier", "Only this tier.", choices=TIERS),
    Param("exclude-tier", "Leave this tier out.", choices=TIERS),
    Param("storage-backend", "Only this backend family, e.g. platform.", metavar="BACKEND"),
    Param("storage-root", "Only this exact storage root, e.g. reports/acme.", metavar="ROOT"),
    Param("path-prefix", "Only under this folder of the root (exports/2026 does not match "
                         "exports/20261).", metavar="FOLDER"),
    Param("slot", "Only what lies under this slot's backend and root.", metavar="SLOT"),
    Param("accept", "Only these MIME types (comma list; image/* allowed).", metavar="MIME"),
    Param("tag", "Only resources with this tag (repeatable: every tag must match).",
          repeatable=True, metavar="TAG"),
    Param("tags", "Alias of tag.", repeatable=True, alias_of="tag"),
    Param("workflow-id", "Only what this workflow run produced.", metavar="RUN"),
    Param("flow", "Only what this flow produced.", metavar="FLOW"),
    Param("step", "Only what this step produced.", metavar="STEP"),
    Param("since", "Only written at or after this time: RFC 3339 (2026-01-31T00:00:00Z) "
                   "or an age such as 30m, 12h, 7d, 2w.", metavar="WHEN"),
    Param("until", "Only written before this time (same forms as since).", metavar="WHEN"),
    Param("min-size", "Only at least this big: bytes, or with a unit (10KiB, 5MB, 1GiB).",
          metavar="SIZE"),
    Param("max-size", "Only at most this big (same forms as min-size).", metavar="SIZE"),
    Param("sort", "Order: relevance (default with words), newest (default without), "
                  "oldest, name (A to Z), size (largest first).", choices=SORTS),
)

PAGING: tuple[Param, ...] = (
    Param("limit", f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).", integer=True,
          minimum=1, maximum=MAX_LIMIT, metavar="N"),
    Param("cursor", "Next page: meta.next-cursor of the previous page, unchanged.",
          metavar="CURSOR"),
)

SEARCH_ONLY: tuple[Param, ...] = (
    Param("q", "Words, \"phrases\", AND/OR/-, field:value (empty: everything, newest first)."),
    Param("keyword-mode", "all: every word must match (default); any: any word; balanced: "
                          "any word, more matching words rank first.", choices=KEYWORD_MODES),
    Param("mode", "lexical: words (default); semantic: meaning (local embedding model); "
                  "hybrid: both, fused by reciprocal rank. 501 where semantic search is off.",
          choices=SEARCH_MODES),
)

#: Options that ride along with the filters: they never change which items come back,
#: only how the total is counted and which per-value counts come with the page.
OPTIONS: tuple[Param, ...] = (
    Param("exact-total", "true: count every match. Without it meta.total is exact up to "
                         "10,000 and beyond that 10,000 with meta.total-relation gte.",
          metavar="true|false"),
    Param("facets", "Counts per value in meta.facets, one pass: comma list of type, tier, "
                    "storage-root, slot, content-major, tag, workflow-id (or all).",
          metavar="NAMES"),
    Param("facet-size", "Values per facet, 1 to 200 (default 20).", integer=True,
          minimum=1, maximum=200, metavar="N"),
)
LIST_PARAMS: tuple[Param, ...] = FILTERS + OPTIONS + PAGING
SEARCH_PARAMS: tuple[Param, ...] = SEARCH_ONLY + FILTERS + OPTIONS + PAGING
FILTER_NAMES: tuple[str, ...] = tuple(p.name for p in FILTERS)
OPTION_NAMES: tuple[str, ...] = tuple(p.name for p in OPTIONS)


class UnknownParameter(BadRequest):
    code = "unknown_parameter"


def check_known(names: Iterable[str], allowed: Iterable[Param | str]) -> None:
    """Raise UnknownParameter naming every name not in ``allowed`` (a typo such as
    ``storage_root=x`` must not silently return unfiltered results)."""
    known = {a if isinstance(a, str) else a.name for a in allowed}
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise UnknownParameter(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}", unknown=unknown)

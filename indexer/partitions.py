"""Index partitions: which Tantivy index under a live index directory holds a workspace.

A search in a workspace of a shared index intersects its words' postings with the
workspace's (dense) posting list document by document: 2-11x the same words on that
workspace's documents alone (docs/search.md, "Tenancy"). On an index that holds only
that workspace the clause is dropped (``IndexReader._only_workspace``) and the query
costs what the bare words do. So big workspaces get an index of their own.

Layout of a live directory ``index-<id>/`` (schema version 6):

- the directory itself is the **shared** partition (a Tantivy index, as before): every
  workspace without a partition of its own. A small install has only this one, laid
  out exactly as before partitions (tools that open ``<home>/index`` keep working);
- ``parts/<workspace>/``: a **dedicated** partition, a Tantivy index holding only that
  workspace's documents (workspace names are ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``, safe
  as a directory name);
- ``PARTITIONS``: the dedicated workspaces (JSON), next to ``APPLIED`` and
  ``SCHEMA_VERSION``.

The map is decided when the directory is built (``PartitionPolicy.plan`` over the
catalog's counts) and never changes inside it: routing is a pure lookup, the same in
every process, and a workspace only moves when a rebuild (``resources reindex``, a
schema change) writes a new directory and swaps the link atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import tantivy

PARTITIONS_FILE = "PARTITIONS"
PARTS_DIR = "parts"
#: The shared partition's name (the live directory itself).
SHARED = ""


@dataclass(frozen=True)
class PartitionPolicy:
    """Which workspaces a rebuild gives an index of their own.

    ``named`` always (an operator knows a tenant will be big), then every workspace with
    at least ``min_docs`` resources, biggest first, up to ``max_dedicated`` in all. The
    bound keeps a rebuild's memory (one writer heap per partition) and the elected
    writer's threads and open files in check; the rest share one partition, where a
    small workspace's query is driven by its own short posting list anyway
    (bench/partitions.py: the shared rows)."""
    min_docs: int = 50_000
    named: tuple[str, ...] = ()
    max_dedicated: int = 8

    def plan(self, counts: Mapping[str, int]) -> list[str]:
        """The dedicated workspaces for a catalog with ``counts`` resources per workspace."""
        chosen = [w for w in dict.fromkeys(self.named)][: self.max_dedicated]
        big = sorted((w for w, n in counts.items() if n >= self.min_docs and w not in chosen),
                     key=lambda w: (-counts[w], w))
        chosen += big[: max(self.max_dedicated - len(chosen), 0)]
        return sorted(chosen)


def partition_dir(directory: Path, name: str) -> Path:
    return directory if name == SHARED else directory / PARTS_DIR / name


class Partitions:
    """The open partitions of one live directory: name -> ``tantivy.Index``, and routing."""

    def __init__(self, directory: Path, indexes: dict[str, tantivy.Index]) -> None:
        self.directory = directory
        self.indexes = indexes
        # Checked on every search (``present``): plain strings, no Path work each time.
        self._metas = [os.path.join(partition_dir(directory, n), "meta.json") for n in indexes]

    @classmethod
    def create(cls, directory: Path, schema: tantivy.Schema,
               dedicated: list[str]) -> "Partitions":
        """New, empty partitions in a new directory; the map is written first, so a
        directory without it is an unfinished build (never swapped in)."""
        _write_json(directory / PARTITIONS_FILE, {"dedicated": sorted(dedicated)})
        indexes = {}
        for name in [SHARED, *sorted(dedicated)]:
            path = partition_dir(directory, name)
            path.mkdir(parents=True, exist_ok=True)
            indexes[name] = tantivy.Index(schema, str(path))
        return cls(directory, indexes)

    @classmethod
    def open(cls, directory: Path, schema: tantivy.Schema) -> "Partitions":
        """Open every partition; raises (ValueError, OSError, a Tantivy panic) when the
        map or any partition is missing or unreadable: the caller rebuilds."""
        try:
            dedicated = json.loads((directory / PARTITIONS_FILE).read_text())["dedicated"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"no readable {PARTITIONS_FILE} map ({exc})") from None
        indexes = {}
        for name in [SHARED, *dedicated]:
            path = partition_dir(directory, name)
            if not (path / "meta.json").exists():
                raise ValueError(f"partition {name or 'shared'!r} is missing")
            index = tantivy.Index(schema, str(path), reuse=True)
            index.searcher()      # touches the meta: a corrupt partition fails here
            indexes[name] = index
        return cls(directory, indexes)

    # -- routing -------------------------------------------------------------------------
    def route(self, workspace: str | None) -> str:
        """The partition that holds ``workspace``'s documents."""
        return workspace if workspace and workspace in self.indexes else SHARED

    def index(self, name: str) -> tantivy.Index:
        return self.indexes[name]

    def for_workspace(self, workspace: str | None) -> tantivy.Index:
        return self.indexes[self.route(workspace)]

    @property
    def shared(self) -> tantivy.Index:
        return self.indexes[SHARED]

    @property
    def dedicated(self) -> list[str]:
        return [n for n in self.indexes if n != SHARED]

    def __len__(self) -> int:
        return len(self.indexes)

    def items(self) -> Iterator[tuple[str, tantivy.Index]]:
        return iter(self.indexes.items())

    # -- state ---------------------------------------------------------------------------
    def present(self) -> bool:
        """Every partition's directory still has its meta (no one deleted it under us)."""
        return all(os.path.exists(meta) for meta in self._metas)

    def reload(self, names: list[str] | None = None) -> None:
        for name in self.indexes if names is None else names:
            self.indexes[name].reload()

    def locate(self, ids: list[str]) -> dict[str, list[str]]:
        """id -> the partitions whose term dictionary has its document.

        A deleted record's workspace is unknown (the change log holds only its id), so
        its document is found this way: one term lookup per id and partition, on one
        searcher per partition. A false hit (a deleted copy not yet merged away) only
        costs a harmless extra delete."""
        searchers = {n: index.searcher() for n, index in self.indexes.items()}
        return {id_: [n for n, s in searchers.items() if s.doc_freq("id", id_)]
                for id_ in ids}


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

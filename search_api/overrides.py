"""Search-index overrides: the text, tags and label the index shows for a resource
instead of (or beside) what extraction found. The bytes never change; the record gets a
new write sequence and its index entry follows through the change log."""
from __future__ import annotations

from typing import Callable

from indexer.schema import effective_content
from storage.catalog import Catalog
from storage.errors import NotFound
from storage.lifecycle import Lifecycle
from storage.records import Resource, SearchIndexOverrides
from storage.spec import parse_overrides

from .persist import derived_source_label


class Overrides:
    def __init__(self, catalog: Catalog, lifecycle: Lifecycle,
                 get: Callable[[str, str], Resource], index_now: Callable[..., None],
                 now: Callable[[], float]) -> None:
        self.catalog = catalog
        self.lifecycle = lifecycle
        self.get = get
        self._index_now = index_now
        self.now = now

    def show(self, workspace: str, uri: str) -> Resource:
        return self.get(workspace, uri)

    def update(self, workspace: str, uri: str, changes: dict | SearchIndexOverrides,
                         replace: bool = False, wait: bool | None = None) -> Resource:
        """Merge ``changes`` into the overrides (``replace``: they become the overrides).
        Tags given are added; the index entry follows at once; bytes never change."""
        res = self.get(workspace, uri)
        new = changes if isinstance(changes, SearchIndexOverrides) else parse_overrides(changes)
        if replace:
            merged = new
        else:
            old = res.search_index
            merged = SearchIndexOverrides(
                text=new.text if new.text is not None else old.text,
                tags=list(dict.fromkeys([*old.tags, *new.tags])),
                source_label=new.source_label if new.source_label is not None else old.source_label,
                include_raw_content=(new.include_raw_content if new.include_raw_content is not None
                                     else old.include_raw_content))
        return self._set(res, merged, wait)

    def clear(self, workspace: str, uri: str, wait: bool | None = None) -> Resource:
        return self._set(self.get(workspace, uri), SearchIndexOverrides(), wait)

    def _set(self, res: Resource, overrides: SearchIndexOverrides,
                       wait: bool | None = None) -> Resource:
        with self.lifecycle.lock.held():
            with self.catalog.transaction() as conn:
                current = self.catalog.resources.get(res.id, conn)
                if current is None:
                    raise NotFound("resource not found")
                current.search_index = overrides
                current.source_label = overrides.source_label or \
                    derived_source_label(current.flow, current.step)
                text = self.catalog.resources.extract_text(current.id)
                current.content_indexed = effective_content(current, text)[1]
                current.updated_at = self.now()
                current.seq = self.catalog.changes.next_seq(conn)
                self.catalog.resources.update(conn, current)
        self._index_now(wait)
        return current

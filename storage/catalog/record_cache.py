"""Records of search pages, kept by (id, seq): a page's hydration without re-reading and
re-decoding rows that have not changed.

Every writer gives a changed record a new ``seq`` (storage/lifecycle.py and the override
update take ``changes.next_seq``; doctor's index-stale check relies on the same rule), so a
record read at one ``seq`` is that record's state for as long as its ``seq`` stays. (The
one rewrite that keeps ``seq``, `resources migrate`, writes a catalog no service reads yet.) A page asks
the catalog for the current ``seq`` of its ids (one narrow query, the same round trip as
before) and reads in full only the ids whose ``seq`` moved or that were never read: what
comes back is exactly what ``Resources.get_many`` returns, deleted records left out. The
decoding of full rows (three JSON columns each) was ~40% of an in-process search of a
common word at 1,000 documents (bench/RESULTS.md, figure 1).

Records handed out are shared between pages: callers treat them as read-only (the
search and list faces only serialize them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from ..records import Resource
from .resources import Resources


class RecordCache:
    def __init__(self, resources: Resources, size: int = 8192) -> None:
        self.resources = resources
        self.size = size
        self._records: OrderedDict[str, Resource] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, ids: list[str]) -> dict[str, Resource]:
        """``Resources.get_many(ids)``, served from records read before where current."""
        if not ids:
            return {}
        current = self.resources.seqs(ids)
        out: dict[str, Resource] = {}
        stale: list[str] = []
        with self._lock:
            for id_, seq in current.items():
                res = self._records.get(id_)
                if res is not None and res.seq == seq:
                    self._records.move_to_end(id_)
                    out[id_] = res
                else:
                    stale.append(id_)
        if stale:
            fresh = self.resources.get_many(stale)
            out.update(fresh)
            with self._lock:
                for id_, res in fresh.items():
                    self._records[id_] = res
                    self._records.move_to_end(id_)
                while len(self._records) > self.size:
                    self._records.popitem(last=False)
        return out

"""A tiny observer hook: the core reports what happened, the service layer measures it.

The core (storage/, indexer/) must not import search_api/ or a metrics library, yet an
operator wants to graph persists, extractions, index commits, gc runs and kv operations.
So the core calls ``emit(name, **fields)`` and whoever cares ``subscribe``s. With no
subscriber (CLI commands, tests of the core) an emit costs one empty-list check.

Events (name: fields):
  persist          tier, connection, bytes, created (bool)
  extract          extractor (text|pdf|none), outcome (ok|truncated|timeout|error), seconds
  index.commit     documents (touched), seconds
  index.expired    documents (of expired resources, deleted from the index ahead of gc)
  gc               removed, removed_bytes, kv_removed, seconds
  kv               op (set|get|delete|list), outcome (ok|<error code>)
  semantic.embed   chunks (embedded in one call), seconds
  search.semantic  mode (semantic|hybrid), seconds

An observer must be cheap and must not raise; one that does is dropped from this call
only (an exception is swallowed), so measuring can never fail a write.
"""
from __future__ import annotations

from typing import Any, Callable

Observer = Callable[[str, dict[str, Any]], None]

_observers: list[Observer] = []


def subscribe(observer: Observer) -> None:
    if observer not in _observers:
        _observers.append(observer)


def unsubscribe(observer: Observer) -> None:
    if observer in _observers:
        _observers.remove(observer)


def emit(name: str, **fields: Any) -> None:
    if not _observers:
        return
    for observer in list(_observers):
        try:
            observer(name, fields)
        except Exception:  # noqa: BLE001 - a metric must never fail the operation
            pass

"""Group commit: concurrent callers share one pass through a critical section.

Each caller submits its item and waits. Whoever finds no pass running becomes the
leader: it takes everything queued (up to ``max_batch``), runs the batch function once
for all of it, and hands each item its own result or exception. Callers that arrived
meanwhile form the next batch. One caller alone pays exactly one pass (no timer, no
added latency); N concurrent callers pay about one pass each wave, not N.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """One caller's item; the batch function sets ``result`` or ``error`` on it."""
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[T]):
    def __init__(self, run_batch: Callable[[list[Pending[T]]], None],
                 max_batch: int = 256) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[Pending[T]] = []
        self._leading = False

    def submit(self, item: T) -> Any:
        """Run ``item`` through the next batch; returns its result or raises its error."""
        mine = Pending(item)
        with self._cond:
            self._queue.append(mine)
            while not mine.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                self._cond.release()
                try:
                    self._run_batch(batch)
                except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                    for p in batch:
                        if not p.done:
                            p.error = exc
                finally:
                    self._cond.acquire()
                    for p in batch:
                        p.done = True
                    self._leading = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

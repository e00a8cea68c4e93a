"""The embedder of `serve`: a background thread following the change log for semantic
search (indexer/semantic.py), never on a request's path."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from .semantic import SemanticIndex


class SemanticFollower:
    """The embedder of `serve`: a background thread that keeps the vectors at the head of
    the change log (when it holds the writer lock) or this process's memory at the
    writer's position (when another process embeds). Never on a request's path: a write
    only nudges it."""

    def __init__(self, sem: SemanticIndex, poll: float = 0.5, elect_every: float = 2.0,
                 lead: bool = True, log: Callable[[str], None] | None = None,
                 save_every: float = 60.0) -> None:
        self.sem = sem
        self.poll = poll
        self.save_every = save_every
        self.elect_every = elect_every
        self.lead = lead
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="semantic-follower",
                                        daemon=True)

    def start(self) -> "SemanticFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.sem.stop_event.set()
        self._wake.set()
        self._thread.join(30)
        if self.sem.leader.held:
            try:
                self.sem.save()
            except Exception as exc:  # noqa: BLE001 - only a cache
                self._log(f"semantic follower: saving the vector index failed: {exc!r}")
        self.sem.leader.keep = False
        self.sem.leader.release(force=True)

    def nudge(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        next_election = 0.0
        next_save = time.monotonic() + self.save_every
        stop = self.sem.stop_event
        while not stop.is_set():
            now = time.monotonic()
            try:
                if self.lead and not self.sem.leader.held and now >= next_election:
                    next_election = now + self.elect_every
                    if self.sem.leader.try_acquire():
                        self.sem.leader.keep = True
                if self.sem.leader.held:
                    self.sem.sync()
                    if now >= next_save:
                        next_save = now + self.save_every
                        self.sem.save()
                else:
                    self.sem.refresh()
            except Exception as exc:  # noqa: BLE001 - keep following, say why
                self._log(f"semantic follower: {exc!r}")
                stop.wait(2.0)
            self._wake.wait(self.poll)
            self._wake.clear()

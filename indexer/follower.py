"""The index follower: a thread that keeps one index at the head of the change log.

In every process that runs it (each `serve` worker, `resources indexer`), it tries to
become the index's elected writer (``LeaderLock``) once per ``elect_every`` seconds.
The writer applies new changes as soon as it is nudged (a write of this process) or
within ``poll`` seconds (a write of another process), so a change is searchable well
inside the one-second refresh interval. Every other process only reloads its reader
when the stored position moves, so its searches see new commits at the same pace.
A writer that dies releases its flock with its process; another takes over at its next
election attempt.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from storage.clock import now as clock_now
from storage.errors import IndexBusy

from .index import SearchIndex


class IndexFollower:
    def __init__(self, index: SearchIndex, poll: float = 0.05, elect_every: float = 1.0,
                 prune_every: float = 60.0, expire_every: float = 5.0, lead: bool = True,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = clock_now) -> None:
        self.index = index
        self.poll = poll
        self.elect_every = elect_every
        self.prune_every = prune_every
        #: How often the writer deletes expired resources' documents (index.sweep_expired).
        self.expire_every = expire_every
        #: The service's clock (RESOURCES_CLOCK_FILE in tests): what "expired" means.
        self.clock = clock
        #: False: never write, only follow what another process's writer commits.
        self.lead = lead
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-follower", daemon=True)

    def start(self) -> "IndexFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self.index.release_writer()
        self.index.leader.keep = False
        self.index.leader.release(force=True)

    def nudge(self) -> None:
        """A change was written in this process: apply it now rather than at the poll."""
        self._wake.set()

    @property
    def leading(self) -> bool:
        return self.index.leader.held

    def _run(self) -> None:
        next_election = 0.0
        next_prune = time.monotonic() + self.prune_every
        next_expiry = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if self.lead and not self.index.leader.held and now >= next_election:
                    next_election = now + self.elect_every
                    if self.index.leader.try_acquire():
                        self.index.leader.keep = True
                        self._log(f"index writer: this process ({self.index.link.name})")
                if self.index.leader.held:
                    self.index.sync()
                    if now >= next_prune:
                        next_prune = now + self.prune_every
                        self.index.prune()
                    if now >= next_expiry:
                        next_expiry = now + self.expire_every
                        self.index.sweep_expired(int(self.clock()))
                else:
                    self.index.refresh()
                    if now >= next_expiry:      # another process's writer may have swept
                        next_expiry = now + self.expire_every
                        self.index.reload_if_expired(int(self.clock()))
            except IndexBusy as exc:
                self._log(f"index follower: {exc.message}")
                self._stop.wait(0.5)
            except Exception as exc:  # noqa: BLE001 - keep following, say why
                self._log(f"index follower: {exc!r}")
                self._stop.wait(0.5)
            self._wake.wait(self.poll)
            self._wake.clear()

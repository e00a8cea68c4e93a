"""The background threads of `serve` (gc, metrics refresh, the metrics janitor): one
daemon thread that does a job every ``interval`` seconds until stopped."""
from __future__ import annotations

import threading


class Periodic:
    """Subclasses define ``tick()`` (and catch what it raises: a loop that dies silently
    is worse than one that logs). ``first_now``: tick at start, then every interval;
    otherwise the first tick comes one interval after start."""

    def __init__(self, name: str, interval: float, first_now: bool = False) -> None:
        self.interval = interval
        self.first_now = first_now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> "Periodic":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        if self.first_now:
            self.tick()
        while not self._stop.wait(self.interval):
            self.tick()

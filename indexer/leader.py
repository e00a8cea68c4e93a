"""Who writes an index: exactly one process at a time, elected by an ``flock``.

Tantivy allows one writer per directory, but its own lock has no wait and no notion of
"the process that follows the change log". This lock is that notion: whoever holds
``<home>/locks/<index>-writer.lock`` applies the log to that index; everybody else only
reads it (and reloads when the holder's applied position moves). The kernel drops an
``flock`` when its process dies, so a SIGKILLed holder is replaced at the next attempt.

Inside one process the lock is shared: an ``flock`` belongs to an open file, so a second
open in the same process would be refused like another process. ``held`` is what every
thread of this process checks.
"""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class LeaderLock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._mutex = threading.Lock()
        self._fd: int | None = None
        #: Keep the lock between batches (the follower of `serve`); an embedded CLI
        #: takes it for one batch and lets go, so a running server can lead after it.
        self.keep = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; True when this process holds it now."""
        with self._mutex:
            if self._fd is not None:
                return True
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # Who holds it, for an operator looking at the file (not used for election).
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return True

    def release(self, force: bool = False) -> None:
        with self._mutex:
            if self._fd is None or (self.keep and not force):
                return
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

"""A long-lived worker process that is killed when a job passes its time bound.

PDF text extraction (pdf.py) and thumbnail rendering (thumbs.py) both run code that a
crafted file can keep busy for minutes (and that swallows ordinary exceptions), so a
clock check inside the job is not enough: the job runs in a spawned process, and the
parent kills it at the bound and starts a fresh one for the next job.

The protocol on the pipe: the worker says ``"ready"`` once its imports are done (start-up
is no job's time), then answers each job it receives with one reply.
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any, Callable

#: How long a fresh interpreter may take to import its libraries and say it is ready.
STARTUP_SECONDS = 60.0


class Unavailable(Exception):
    """The worker could not be started."""


class TimedOut(Exception):
    """The job passed its time bound; the worker was killed."""


class Crashed(Exception):
    """The worker died or answered nonsense mid-job (``__cause__``); it was killed."""


def serve_jobs(conn: Connection, handle: Callable[[Any], Any]) -> None:
    """The worker's side, after its set-up: say ready, then answer jobs until the parent
    closes the pipe."""
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        conn.send(handle(job))


class KillableWorker:
    """One worker process running ``target(conn)`` (a module-level function that sets up
    and calls ``serve_jobs``), started on demand and restarted after a kill. Not
    thread-safe: the caller holds a lock around ``call``."""

    def __init__(self, target: Callable[[Connection], None], name: str, what: str,
                 startup_seconds: float = STARTUP_SECONDS) -> None:
        self.target, self.name, self.what = target, name, what
        self.startup_seconds = startup_seconds
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")   # fork is unsafe in a threaded server
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=self.target, args=(child,), daemon=True, name=self.name)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        # Start-up (a fresh interpreter importing its libraries) is not part of any job's
        # time bound: wait for the worker to say it is ready before handing it a job.
        if not parent.poll(self.startup_seconds) or parent.recv() != "ready":
            self.kill()
            raise RuntimeError(f"the {self.what} did not start")

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def call(self, job: Any, timeout: float,
             crash_errors: tuple[type[BaseException], ...] = (Exception,)) -> Any:
        """The worker's reply to ``job``. Raises ``Unavailable`` (could not start),
        ``TimedOut`` or ``Crashed`` (an error of ``crash_errors`` on the pipe); the
        worker is killed in the last two cases and restarted by the next call."""
        if self._proc is None or not self._proc.is_alive():
            self.kill()
            try:
                self._start()
            except (RuntimeError, OSError, EOFError) as exc:
                raise Unavailable(str(exc)) from exc
        assert self._conn is not None
        try:
            self._conn.send(job)
            if self._conn.poll(timeout):
                return self._conn.recv()
        except crash_errors as exc:
            self.kill()
            raise Crashed(f"{type(exc).__name__}: {exc}") from exc
        self.kill()
        raise TimedOut(f"passed {timeout:g} s")

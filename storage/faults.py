"""Fault-injection points for crash tests.

``RESOURCES_FAULT=<point>`` (or ``<point>@N`` for the N-th time it is reached) makes the
process SIGKILL itself at that point, so a test can prove recovery from a crash at each
step of an operation. Unset (always, in production) a call is one comparison.
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("RESOURCES_FAULT") or ""
_POINT, _, _NTH = _SPEC.partition("@")
_COUNT = {"n": 0}


def fault(point: str) -> None:
    if _POINT and _POINT == point:
        _COUNT["n"] += 1
        if _COUNT["n"] >= int(_NTH or 1):
            os.kill(os.getpid(), signal.SIGKILL)

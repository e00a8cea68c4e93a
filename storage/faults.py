"""Fault-injection points for crash tests.

``RESOURCES_FAULT=<point>`` makes the process SIGKILL itself when it reaches that
point, so a test can prove recovery from a crash at each step of an operation.
Unset (always, in production) this is a dictionary lookup and nothing else.
"""
from __future__ import annotations

import os
import signal

_POINT = os.environ.get("RESOURCES_FAULT")


def fault(point: str) -> None:
    if _POINT and _POINT == point:
        os.kill(os.getpid(), signal.SIGKILL)

"""Time, in one place, so tests can control it without sleeping.

Production reads the system clock. A test may set ``RESOURCES_CLOCK_FILE`` to a file
holding epoch seconds (float); every reading then comes from that file, so a test can
move a running server's clock forward (expiry of signed URLs, TTLs, gc) by rewriting it.
"""
from __future__ import annotations

import functools
import os
import time
from datetime import datetime, timezone


def now() -> float:
    path = os.environ.get("RESOURCES_CLOCK_FILE")
    if path:
        try:
            with open(path) as fh:
                return float(fh.read().strip())
        except (OSError, ValueError):
            pass
    return time.time()


@functools.lru_cache(maxsize=65_536)
def rfc3339(ts: float | None) -> str | None:
    """UTC, millisecond precision. Cached: a page of records formats the same few
    timestamps again and again (three per record; strftime was ~20% of a search request)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

"""Operational settings of `serve`: readiness thresholds, metrics refresh, log options.

Read once from the environment (``RESOURCES_*``); `serve` flags override the log and
metrics-port ones. Kept apart from ``storage.config.Settings``: none of this changes what
is stored or how, only how the running server reports on itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

GiB = 1024 ** 3


@dataclass
class OpsSettings:
    #: /readyz fails below this many free bytes on the data home's file system.
    ready_min_free_bytes: int = GiB
    #: /readyz fails when more catalog changes than this wait for the index ...
    ready_max_index_lag: int = 10_000
    #: ... or when the oldest waiting change is older than this (seconds).
    ready_max_index_lag_seconds: float = 300.0
    #: How often the background refreshes the gauges that need a catalog scan.
    metrics_refresh_seconds: float = 30.0
    #: Loopback port of a key-less /metrics listener (None: only the keyed route).
    metrics_port: int | None = None
    log_level: str = "info"
    log_format: str | None = None      # None: text on a terminal, else json

    @classmethod
    def from_env(cls) -> "OpsSettings":
        env = os.environ
        s = cls()
        if env.get("RESOURCES_READY_MIN_FREE_BYTES"):
            s.ready_min_free_bytes = int(env["RESOURCES_READY_MIN_FREE_BYTES"])
        if env.get("RESOURCES_READY_MAX_INDEX_LAG"):
            s.ready_max_index_lag = int(env["RESOURCES_READY_MAX_INDEX_LAG"])
        if env.get("RESOURCES_READY_MAX_INDEX_LAG_SECONDS"):
            s.ready_max_index_lag_seconds = float(env["RESOURCES_READY_MAX_INDEX_LAG_SECONDS"])
        if env.get("RESOURCES_METRICS_REFRESH_SECONDS"):
            s.metrics_refresh_seconds = float(env["RESOURCES_METRICS_REFRESH_SECONDS"])
        if env.get("RESOURCES_METRICS_PORT"):
            s.metrics_port = int(env["RESOURCES_METRICS_PORT"])
        if env.get("RESOURCES_LOG_LEVEL"):
            s.log_level = env["RESOURCES_LOG_LEVEL"].lower()
        if env.get("RESOURCES_LOG_FORMAT"):
            s.log_format = env["RESOURCES_LOG_FORMAT"].lower()
        return s

"""Quotas per workspace and tier: at most so many bytes and so many resources.

Limits are set by an operator (``resources quota set``, ``PUT /admin/quotas/{ws}``) and
kept in ``<home>/quotas.json`` (written atomically; every process re-reads it when it
changes), not in the catalog schema: no migration, and a limit is configuration, not
data.

Enforcement is the lifecycle's admission hook (``Lifecycle.admit``): it runs under the
commit lock, after the body is staged and before anything is published, so the persist
that would cross a limit is refused with 507 ``quota_exceeded`` and nothing is kept
(the staged bytes are dropped), and two concurrent persists cannot both squeeze under
it. Usage is counted from the catalog at that moment (the same figures as ``/usage`` and
``doctor``); a workspace without a limit costs nothing: no query runs.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import InvalidSpec, QuotaExceeded
from .layout import check_workspace
from .records import Resource


@dataclass(frozen=True)
class Limit:
    max_bytes: int | None = None
    max_resources: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {"max-bytes": self.max_bytes, "max-resources": self.max_resources}


#: (bytes, resources) that earlier items of one bulk batch add, per (workspace, tier).
Pending = dict[tuple[str, str], list[int]]


class QuotaStore:
    def __init__(self, path: Path, catalog: Catalog, tiers: tuple[str, ...]) -> None:
        self.path = path
        self.catalog = catalog
        self.tiers = tiers
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._limits: dict[str, dict[str, Limit]] = {}

    # -- configuration ----------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Limit]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._limits = None, {}
            return self._limits
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                raw = json.loads(self.path.read_text() or "{}")
                self._limits = {ws: {tier: Limit(v.get("max-bytes"), v.get("max-resources"))
                                     for tier, v in tiers.items()}
                                for ws, tiers in raw.items()}
                self._stamp = stamp
            return self._limits

    def limits(self, workspace: str) -> dict[str, Limit]:
        return dict(self._load().get(workspace, {}))

    def all_limits(self) -> dict[str, dict[str, Limit]]:
        return {ws: dict(t) for ws, t in self._load().items()}

    def set(self, workspace: str, tier: str, max_bytes: Any, max_resources: Any) -> Limit:
        """Set (or with both None, remove) the limit of one workspace and tier."""
        check_workspace(workspace)
        if tier not in self.tiers:
            raise InvalidSpec(f"tier must be one of {', '.join(self.tiers)}")
        limit = Limit(_non_negative(max_bytes, "max-bytes"),
                      _non_negative(max_resources, "max-resources"))
        with self._lock:
            try:
                raw = json.loads(self.path.read_text() or "{}")
            except FileNotFoundError:
                raw = {}
            tiers = raw.setdefault(workspace, {})
            if limit.max_bytes is None and limit.max_resources is None:
                tiers.pop(tier, None)
                if not tiers:
                    raw.pop(workspace)
            else:
                tiers[tier] = limit.to_json()
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(raw, indent=2, sort_keys=True))
            os.replace(tmp, self.path)
            self._stamp = None
        return limit

    # -- usage and enforcement ----------------------------------------------------------
    def usage(self, workspace: str, tier: str) -> tuple[int, int]:
        """(bytes, resources) of the workspace's tier in the catalog now."""
        return self.catalog.resources.tier_usage(workspace, tier)

    def report(self, workspace: str) -> dict[str, Any]:
        """Limits beside usage, per tier (for /usage, the CLI and the web view)."""
        limits = self.limits(workspace)
        out = {}
        for tier in self.tiers:
            used_bytes, used_count = self.usage(workspace, tier)
            limit = limits.get(tier, Limit())
            out[tier] = {**limit.to_json(), "bytes": used_bytes, "resources": used_count}
        return out

    def admit(self, res: Resource, current: Resource | None, pending: Pending | None = None
              ) -> None:
        """Raise QuotaExceeded if publishing ``res`` (replacing ``current``) would take its
        workspace's tier past a limit. Called under the commit lock."""
        limit = self._load().get(res.workspace, {}).get(res.tier)
        if limit is None:
            return
        add_bytes, add_count = res.size, 1
        if current is not None and current.tier == res.tier and current.workspace == res.workspace:
            add_bytes, add_count = res.size - current.size, 0
        key = (res.workspace, res.tier)
        before = pending.get(key, [0, 0]) if pending is not None else [0, 0]
        used_bytes, used_count = self.usage(res.workspace, res.tier)
        used_bytes, used_count = used_bytes + before[0], used_count + before[1]
        if limit.max_bytes is not None and add_bytes > 0 and \
                used_bytes + add_bytes > limit.max_bytes:
            raise QuotaExceeded(
                f"quota exceeded: workspace {res.workspace} {res.tier} tier is limited to "
                f"{limit.max_bytes:,} bytes and holds {used_bytes:,}; this persist adds "
                f"{add_bytes:,}. Nothing was kept.", limit="max-bytes", tier=res.tier,
                max=limit.max_bytes, usage=used_bytes, adding=add_bytes)
        if limit.max_resources is not None and add_count > 0 and \
                used_count + add_count > limit.max_resources:
            raise QuotaExceeded(
                f"quota exceeded: workspace {res.workspace} {res.tier} tier is limited to "
                f"{limit.max_resources:,} resources and holds {used_count:,}. Nothing was "
                f"kept.", limit="max-resources", tier=res.tier, max=limit.max_resources,
                usage=used_count, adding=add_count)
        if pending is not None:
            pending[key] = [before[0] + add_bytes, before[1] + add_count]


def _non_negative(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSpec(f"{what} must be a non-negative integer or null")
    return value

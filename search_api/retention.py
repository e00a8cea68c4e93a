"""Retention: what expires goes (gc), a run's resources go together (cleanup), and what
a KV pointer refers to is resolved or reported gone; plus the usage totals."""
from __future__ import annotations

import time
from typing import Any, Callable

from storage.catalog import Catalog
from storage.config import Settings
from storage.errors import InvalidSpec, NotFound
from storage.events import emit
from storage.faults import fault
from storage.kv import KvEntry, KvStore, find_uris
from storage.layout import check_workspace
from storage.lifecycle import Lifecycle
from storage.records import Resource, parse_uri


class Retention:
    def __init__(self, settings: Settings, catalog: Catalog, lifecycle: Lifecycle,
                 kv: KvStore, get: Callable[[str, str], Resource],
                 index_now: Callable[..., None], now: Callable[[], float]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.lifecycle = lifecycle
        self.kv = kv
        self.get = get
        self._index_now = index_now
        self.now = now

    # -- workflow runs -------------------------------------------------------------------
    def delete_workflow(self, workspace: str, workflow_id: str, tier: str | None = None,
                        dry_run: bool = False, wait: bool | None = None) -> list[Resource]:
        """A run's cleanup: every resource of the run (optionally of one tier).
        ``dry_run`` only returns what would be deleted."""
        check_workspace(workspace)
        if tier is not None and tier not in self.settings.tiers:
            raise InvalidSpec(f"tier must be one of {', '.join(self.settings.tiers)}")
        doomed = list(self.catalog.resources.of_workflow(workspace, workflow_id, tier or None))
        if dry_run:
            return doomed
        for i in range(0, len(doomed), 200):
            self.lifecycle.delete(doomed[i:i + 200])
        self._index_now(wait)
        return doomed

    # -- KV pointer store ----------------------------------------------------------------
    def resolve_refs(self, workspace: str, entry: KvEntry) -> dict[str, Any]:
        """For every res:// uri inside the value: its record, or null with a reason."""
        refs: dict[str, Any] = {}
        for uri in find_uris(entry.value):
            try:
                refs[uri] = {"record": self.get(workspace, uri).to_json(self.settings.public_url),
                             "reason": None}
            except NotFound:
                refs[uri] = {"record": None, "reason": self._gone_reason(workspace, uri)}
        return refs

    def _gone_reason(self, workspace: str, uri: str) -> str:
        try:
            ws, _, id_ = parse_uri(uri)
        except NotFound:
            return "missing"
        res = self.catalog.resources.get(id_)
        if res is not None and ws == workspace == res.workspace and res.expires_at is not None \
                and res.expires_at <= self.now():
            return "expired"
        return "missing"

    def dangling_refs(self) -> list[dict[str, str]]:
        out = []
        for entry in self.kv.iter_all():
            for uri in find_uris(entry.value):
                try:
                    self.get(entry.workspace, uri)
                except NotFound:
                    out.append({"workspace": entry.workspace, "key": entry.key, "uri": uri,
                                "reason": self._gone_reason(entry.workspace, uri)})
        return out

    # -- retention -----------------------------------------------------------------------
    def expired(self) -> list[Resource]:
        return list(self.catalog.resources.expired(self.now()))

    def gc(self, dry_run: bool = False) -> dict[str, Any]:
        """Delete every resource past its expires-at (blob, record and index entry
        together) and expired KV keys. ``dry_run`` only previews."""
        started = time.monotonic()
        doomed = self.expired()
        kv_expired = self.kv.expired_keys()
        if not dry_run and (doomed or kv_expired):
            # A durable intent: a sweep interrupted by a crash is finished at next start.
            intent = self.catalog.intents.add_now("gc", {}, self.now())
            for i in range(0, len(doomed), 100):
                self.lifecycle.delete(doomed[i:i + 100])
                fault("gc.after_batch")
            self.kv.sweep()
            with self.catalog.transaction() as conn:
                self.catalog.intents.drop(conn, intent)
            self._index_now()
        if not dry_run:
            emit("gc", removed=len(doomed), removed_bytes=sum(r.size for r in doomed),
                 kv_removed=len(kv_expired), seconds=time.monotonic() - started)
        return {"dry-run": dry_run, "removed": [r.uri for r in doomed],
                "count": len(doomed), "bytes": sum(r.size for r in doomed),
                "kv-removed": kv_expired}

    def usage(self, workspace: str | None = None) -> dict[str, Any]:
        """Bytes and counts per workspace, tier and storage root; extraction failures."""
        rows = self.catalog.resources.usage_groups(workspace)
        groups = [{"workspace": w, "tier": t, "storage-root": r or None, "count": c, "bytes": b}
                  for w, t, r, c, b in rows]
        failures = self.catalog.resources.extraction_failures(workspace)

        def total(key: str) -> list[dict]:
            acc: dict[str, dict] = {}
            for g in groups:
                k = g[key] or "(none)"
                entry = acc.setdefault(k, {key: g[key], "count": 0, "bytes": 0})
                entry["count"] += g["count"]
                entry["bytes"] += g["bytes"]
            return list(acc.values())
        return {"workspace": workspace, "count": sum(g["count"] for g in groups),
                "bytes": sum(g["bytes"] for g in groups), "by-tier": total("tier"),
                "by-storage-root": total("storage-root"),
                "by-workspace": total("workspace") if workspace is None else None,
                "groups": groups, "extraction-failures": failures}

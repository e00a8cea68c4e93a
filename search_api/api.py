"""What the CLI talks to: the service in-process (embedded) or the HTTP API (remote).

Both return the same envelopes, so the CLI prints the same JSON either way.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Iterator, Protocol

from storage.clock import rfc3339
from storage.config import Settings

from . import envelope
from .service import ResourceService


class Api(Protocol):
    workspace: str

    def persist(self, body: BinaryIO, spec: dict, idempotency_key: str | None) -> dict: ...
    def get(self, uri: str) -> dict: ...
    def read(self, uri: str) -> Iterator[bytes]: ...
    def url(self, uri: str, ttl: int | None) -> dict: ...
    def list(self, params: dict, limit: Any, cursor: str | None) -> dict: ...
    def search(self, q: str, params: dict, limit: Any, cursor: str | None,
               keyword_mode: str = "all", mode: str = "lexical") -> dict: ...
    def delete(self, uri: str) -> dict: ...
    def workflow(self, workflow_id: str, step: str | None, limit: Any, cursor: str | None) -> dict: ...
    def workflow_delete(self, workflow_id: str, tier: str | None,
                        dry_run: bool = False) -> dict: ...
    def search_index(self, op: str, uri: str, changes: dict | None) -> dict: ...
    def slots_bind(self, slot: str, root: str, connection: str) -> dict: ...
    def slots_list(self) -> dict: ...
    def picker_origins(self, origins: list[str] | None) -> dict: ...


class EmbeddedApi:
    """The service on the local data home."""

    def __init__(self, workspace: str, settings: Settings | None = None) -> None:
        self.workspace = workspace
        self.settings = settings or Settings.from_env()
        self._service: ResourceService | None = None
        #: Run crash recovery when the service opens (doctor turns it off to report first).
        self.recover = True
        #: --wait / --no-wait of a write command (None: the service's default, which
        #: waits until the index shows the change, so a search right after finds it).
        self.wait: bool | None = None

    @property
    def service(self) -> ResourceService:
        if self._service is None:
            self._service = ResourceService(self.settings, recover=self.recover)
        return self._service

    @property
    def base(self) -> str:
        return self.settings.public_url

    def close(self) -> None:
        if self._service is not None:
            self._service.close()

    def persist(self, body: BinaryIO, spec: dict, idempotency_key: str | None) -> dict:
        result = self.service.persist(self.workspace, spec, body, idempotency_key,
                                      wait=self.wait)
        return envelope.record(result.resource, self.base, created=result.created,
                               replayed=result.replayed)

    def get(self, uri: str) -> dict:
        return envelope.record(self.service.get(self.workspace, uri), self.base)

    def read(self, uri: str) -> Iterator[bytes]:
        return self.service.read(self.workspace, uri)[3]

    def list(self, params: dict, limit: Any, cursor: str | None) -> dict:
        return envelope.page(self.service.list(self.workspace, params, limit, cursor), self.base)

    def search(self, q: str, params: dict, limit: Any, cursor: str | None,
               keyword_mode: str = "all", mode: str = "lexical") -> dict:
        p = self.service.search(self.workspace, q, params, limit, cursor, keyword_mode,
                                mode=mode)
        return envelope.page(p, self.base, search=True)

    def delete(self, uri: str) -> dict:
        return envelope.record(self.service.delete(self.workspace, uri, wait=self.wait),
                               self.base, deleted=True)

    def url(self, uri: str, ttl: Any) -> dict:
        path, expires = self.service.signed_url(self.workspace, uri, ttl)
        return envelope.plain({"url": f"{self.base}{path}", "expires-at": rfc3339(expires)})

    def workflow_delete(self, workflow_id: str, tier: str | None, dry_run: bool = False) -> dict:
        removed = self.service.delete_workflow(self.workspace, workflow_id, tier, dry_run,
                                               wait=self.wait)
        return envelope.workflow_deleted(removed, dry_run)

    def workflow(self, workflow_id: str, step: str | None, limit: Any, cursor: str | None) -> dict:
        p = self.service.workflow_resources(self.workspace, workflow_id, step, limit, cursor)
        return envelope.page(p, self.base)

    def search_index(self, op: str, uri: str, changes: dict | None) -> dict:
        svc = self.service
        if op == "show":
            res = svc.show_overrides(self.workspace, uri)
        elif op == "update":
            res = svc.update_overrides(self.workspace, uri, changes or {}, wait=self.wait)
        else:
            res = svc.clear_overrides(self.workspace, uri, wait=self.wait)
        env = envelope.record(res, self.base)
        env["meta"]["search-index"] = env["data"]["search-index"]   # as the HTTP route
        return env

    def kv_set(self, key: str, value: Any, ttl: Any, if_version: Any) -> dict:
        entry, created = self.service.kv.set(self.workspace, key, value, ttl, if_version)
        return envelope.plain(entry.to_json(), created=created)

    def kv_get(self, key: str, resolve: bool) -> dict:
        entry = self.service.kv.get(self.workspace, key)
        data = entry.to_json()
        if resolve:
            data["refs"] = self.service.resolve_refs(self.workspace, entry)
        return envelope.plain(data)

    def kv_delete(self, key: str) -> dict:
        return envelope.plain(self.service.kv.delete(self.workspace, key).to_json(), deleted=True)

    def kv_list(self, prefix: str, limit: Any, cursor: str | None) -> dict:
        from indexer.query import parse_limit
        entries, total, nxt = self.service.kv.list(self.workspace, prefix, parse_limit(limit), cursor)
        return envelope.plain({"items": [e.to_json() for e in entries]}, total=total,
                              count=len(entries), **{"next-cursor": nxt})

    def slots_bind(self, slot: str, root: str, connection: str) -> dict:
        s = self.service.bind_slot(self.workspace, slot, root, connection)
        return envelope.plain(self.service.slot_json(s))

    def slots_list(self) -> dict:
        slots = self.service.list_slots(self.workspace)
        return envelope.plain({"items": [self.service.slot_json(s) for s in slots]},
                              total=len(slots))

    def status(self) -> dict:
        """Mode, data home, workspace and the index backlog (`resources status`)."""
        health = self.service.health()
        usage = self.service.usage(self.workspace)
        # Every workspace of the home: a wrong RESOURCES_WORKSPACE shows at a glance.
        everyone = self.service.usage(None)["by-workspace"] or []
        return {"mode": "embedded", "home": str(self.settings.home),
                "workspace": self.workspace, "resources": usage["count"],
                "workspaces-here": ", ".join(f"{w['workspace']} ({w['count']})"
                                             for w in everyone) or "none",
                "bytes": usage["bytes"],
                "index-backlog": (health.get("catalog") or {}).get("index-backlog"),
                "documents": (health.get("index") or {}).get("documents")}

    def picker_origins(self, origins: list[str] | None) -> dict:
        """The picker's allowed origins; replaced first when ``origins`` is given."""
        svc = self.service
        items = svc.picker_origins(self.workspace) if origins is None \
            else svc.set_picker_origins(self.workspace, origins)
        return envelope.plain({"origins": items}, total=len(items))

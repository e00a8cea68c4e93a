"""The remote face of the CLI: the same calls as EmbeddedApi, over HTTP with httpx.

Uploads and downloads stream; server errors come back as the same typed exceptions,
so the CLI prints and exits exactly as in embedded mode.
"""
from __future__ import annotations

import json
import os
from typing import Any, BinaryIO, Iterator

import httpx

from storage import errors

_BY_STATUS: dict[int, type[errors.ResourceError]] = {
    400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden,
    404: errors.NotFound, 409: errors.Conflict, 413: errors.TooLarge,
    416: errors.RangeNotSatisfiable, 503: errors.Unavailable,
}
CHUNK = 1024 * 1024


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        response.read()
        body = response.json().get("error", {})
    except Exception:  # noqa: BLE001 - a proxy's HTML page, say
        body = {}
    cls = _BY_STATUS.get(response.status_code, errors.ResourceError)
    exc = cls(body.get("message") or f"HTTP {response.status_code}")
    exc.code = body.get("code") or cls.code
    exc.status = response.status_code
    raise exc


class WrongWorkspace(errors.NotFound):
    code = "wrong_workspace"


class RemoteApi:
    def __init__(self, base_url: str, key: str, workspace: str | None) -> None:
        #: None: the key's own workspace, asked of the server once (GET /v1/me).
        self._workspace = workspace
        self._me: dict | None = None
        #: --wait / --no-wait of a write command: wait-for=indexed / durable.
        self.wait: bool | None = None
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(60.0),
                                   headers={"Authorization": f"Bearer {key}"})

    @property
    def workspace(self) -> str:
        if self._workspace is None:
            self._workspace = self.me()["workspace"]
        return self._workspace

    def me(self) -> dict:
        """The key's id, workspace and scopes."""
        if self._me is None:
            self._me = self._request_json("GET", "/v1/me")["data"]
        return self._me

    def _explain_not_found(self, exc: errors.NotFound) -> None:
        """A 404 for a workspace the key does not belong to reads like any missing
        resource (the server tells nothing about other workspaces); the key's own
        workspace is ours to know, so say the real cause."""
        try:
            own = self.me()["workspace"]
        except errors.ResourceError:
            return
        if self._workspace is not None and own != self._workspace:
            raise WrongWorkspace(
                f"the key belongs to workspace {own!r}, not {self._workspace!r}: unset "
                f"RESOURCES_WORKSPACE (the key's own is the default) or use a key of "
                f"{self._workspace!r}") from exc

    def close(self) -> None:
        self.client.close()

    @property
    def service(self) -> Any:
        raise errors.BadRequest("this command runs on the server's data home; unset "
                                "RESOURCES_API_URL to run it embedded")

    def _ws(self, path: str) -> str:
        return f"/v1/{self.workspace}{path}"

    def _unreachable(self, exc: Exception) -> errors.Unavailable:
        return errors.Unavailable(f"cannot reach the server at {self.base_url} ({exc}); is it "
                                  f"running (`make run` or `resources serve`)? Check "
                                  f"RESOURCES_API_URL.")

    def _request_json(self, method: str, path: str, **kw: Any) -> dict:
        try:
            r = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        raise_for(r)
        return r.json()

    def _json(self, method: str, path: str, **kw: Any) -> dict:
        try:
            return self._request_json(method, path, **kw)
        except errors.NotFound as exc:
            self._explain_not_found(exc)
            raise

    @staticmethod
    def _params(params: dict, limit: Any = None, cursor: str | None = None) -> list:
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            for v in (value if isinstance(value, list) else [value]):
                out.append((key, str(v)))
        if limit is not None:
            out.append(("limit", str(limit)))
        if cursor:
            out.append(("cursor", cursor))
        return out

    def _wait(self, params: dict | None = None) -> dict:
        params = dict(params or {})
        if self.wait is not None:
            params["wait-for"] = "indexed" if self.wait else "durable"
        return params

    def persist(self, body: BinaryIO, spec: dict, idempotency_key: str | None) -> dict:
        headers = {"X-Persist-Spec": json.dumps(spec), "Content-Type": "application/octet-stream"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size - body.tell())
        except (OSError, AttributeError, ValueError):
            pass

        def stream() -> Iterator[bytes]:
            while chunk := body.read(CHUNK):
                yield chunk
        return self._json("POST", self._ws("/resources"), content=stream(), headers=headers,
                          params=self._wait())

    def get(self, uri: str) -> dict:
        return self._json("GET", self._ws("/resources/by-uri"), params={"uri": uri})

    def read(self, uri: str) -> Iterator[bytes]:
        req = self.client.build_request("GET", self._ws("/resources/content"), params={"uri": uri})
        try:
            r = self.client.send(req, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        try:
            raise_for(r)
        except errors.NotFound as exc:
            r.close()
            self._explain_not_found(exc)
            raise
        except BaseException:
            r.close()
            raise

        def gen() -> Iterator[bytes]:
            try:
                yield from r.iter_bytes(CHUNK)
            finally:
                r.close()
        return gen()

    def url(self, uri: str, ttl: Any) -> dict:
        params = {"uri": uri}
        if ttl is not None:
            params["ttl"] = str(ttl)
        return self._json("GET", self._ws("/resources/url"), params=params)

    def list(self, params: dict, limit: Any, cursor: str | None) -> dict:
        return self._json("GET", self._ws("/resources"), params=self._params(params, limit, cursor))

    def search(self, q: str, params: dict, limit: Any, cursor: str | None,
               keyword_mode: str = "all") -> dict:
        return self._json("GET", self._ws("/resources/search"),
                          params=[("q", q), ("keyword-mode", keyword_mode),
                                  *self._params(params, limit, cursor)])

    def delete(self, uri: str) -> dict:
        return self._json("DELETE", self._ws("/resources/by-uri"), params=self._wait({"uri": uri}))

    def workflow(self, workflow_id: str, step: str | None, limit: Any, cursor: str | None) -> dict:
        params = {"step": step} if step else {}
        return self._json("GET", self._ws(f"/workflows/{_seg(workflow_id)}/resources"),
                          params=self._params(params, limit, cursor))

    def workflow_delete(self, workflow_id: str, tier: str | None, dry_run: bool = False) -> dict:
        params = {"tier": tier} if tier else {}
        if dry_run:
            params["dry-run"] = "true"
        return self._json("DELETE", self._ws(f"/workflows/{_seg(workflow_id)}/resources"),
                          params=self._wait(params))

    def search_index(self, op: str, uri: str, changes: dict | None) -> dict:
        if op == "show":
            return self._json("GET", self._ws("/resources/search-index"), params={"uri": uri})
        return self._json("POST", self._ws("/resources/search-index"),
                          params=self._wait({"uri": uri, "op": op}), json=changes or {})

    def kv_set(self, key: str, value: Any, ttl: Any, if_version: Any) -> dict:
        body: dict[str, Any] = {"value": value}
        if ttl is not None:
            body["ttl"] = ttl
        if if_version is not None:
            body["if-version"] = if_version
        return self._json("PUT", self._ws(f"/kv/{_seg(key)}"), json=body)

    def kv_get(self, key: str, resolve: bool) -> dict:
        params = {"resolve": "true"} if resolve else {}
        return self._json("GET", self._ws(f"/kv/{_seg(key)}"), params=params)

    def kv_delete(self, key: str) -> dict:
        return self._json("DELETE", self._ws(f"/kv/{_seg(key)}"))

    def kv_list(self, prefix: str, limit: Any, cursor: str | None) -> dict:
        params = {"prefix": prefix}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor:
            params["cursor"] = cursor
        return self._json("GET", self._ws("/kv"), params=params)

    def slots_bind(self, slot: str, root: str, connection: str) -> dict:
        return self._json("PUT", self._ws(f"/slots/{_seg(slot)}"),
                          json={"root": root, "connection": connection})

    def slots_list(self) -> dict:
        return self._json("GET", self._ws("/slots"))

    def status(self) -> dict:
        """Mode, server, key and the server's index backlog (`resources status`)."""
        me = self.me()
        try:
            health = self.client.get("/healthz").json().get("data", {})
        except (httpx.TransportError, ValueError):
            health = {}
        # The index lag is on /readyz (its index check); /healthz says only "alive"
        # to keys that are not the operator's.
        try:
            ready = self.client.get("/readyz").json()
            checks = ready.get("data", {}).get("checks") or \
                ready.get("error", {}).get("details", {}).get("checks") or {}
        except (httpx.TransportError, ValueError):
            checks = {}
        catalog = {"index-backlog": (checks.get("index") or {}).get("lag_changes")}
        # This workspace's own count: the server never tells one key about the others.
        try:
            resources = self._json("GET", self._ws("/usage"))["data"].get("count")
        except Exception:  # noqa: BLE001 - status shows what it can
            resources = None
        return {"mode": "remote", "server": self.base_url, "workspace": self.workspace,
                "key-id": me["key-id"], "scopes": me["scopes"],
                "server-ok": health.get("ok"), "index-backlog": catalog.get("index-backlog"),
                "resources": resources}

    def picker_origins(self, origins: list[str] | None) -> dict:
        if origins is None:
            return self._json("GET", self._ws("/picker/origins"))
        return self._json("PUT", self._ws("/picker/origins"), json={"origins": origins})


def _seg(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")

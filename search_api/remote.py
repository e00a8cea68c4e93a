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


class RemoteApi:
    def __init__(self, base_url: str, key: str, workspace: str) -> None:
        self.workspace = workspace
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(60.0),
                                   headers={"Authorization": f"Bearer {key}"})

    def close(self) -> None:
        self.client.close()

    @property
    def service(self) -> Any:
        raise errors.BadRequest("this command runs on the server's data home; unset "
                                "RESOURCES_API_URL to run it embedded")

    def _ws(self, path: str) -> str:
        return f"/v1/{self.workspace}{path}"

    def _json(self, method: str, path: str, **kw: Any) -> dict:
        try:
            r = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"cannot reach the server: {exc}") from exc
        raise_for(r)
        return r.json()

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
        return self._json("POST", self._ws("/resources"), content=stream(), headers=headers)

    def get(self, uri: str) -> dict:
        return self._json("GET", self._ws("/resources/by-uri"), params={"uri": uri})

    def read(self, uri: str) -> Iterator[bytes]:
        req = self.client.build_request("GET", self._ws("/resources/content"), params={"uri": uri})
        try:
            r = self.client.send(req, stream=True)
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"cannot reach the server: {exc}") from exc
        try:
            raise_for(r)
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

    def search(self, q: str, params: dict, limit: Any, cursor: str | None) -> dict:
        return self._json("GET", self._ws("/resources/search"),
                          params=[("q", q), *self._params(params, limit, cursor)])

    def delete(self, uri: str) -> dict:
        return self._json("DELETE", self._ws("/resources/by-uri"), params={"uri": uri})

    def workflow(self, workflow_id: str, step: str | None, limit: Any, cursor: str | None) -> dict:
        params = {"step": step} if step else {}
        return self._json("GET", self._ws(f"/workflows/{_seg(workflow_id)}/resources"),
                          params=self._params(params, limit, cursor))

    def workflow_delete(self, workflow_id: str, tier: str | None) -> dict:
        params = {"tier": tier} if tier else {}
        return self._json("DELETE", self._ws(f"/workflows/{_seg(workflow_id)}/resources"),
                          params=params)

    def search_index(self, op: str, uri: str, changes: dict | None) -> dict:
        if op == "show":
            return self._json("GET", self._ws("/resources/search-index"), params={"uri": uri})
        return self._json("POST", self._ws("/resources/search-index"),
                          params={"uri": uri, "op": op}, json=changes or {})

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

    def picker_origins(self, origins: list[str] | None) -> dict:
        if origins is None:
            return self._json("GET", self._ws("/picker/origins"))
        return self._json("PUT", self._ws("/picker/origins"), json={"origins": origins})


def _seg(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")

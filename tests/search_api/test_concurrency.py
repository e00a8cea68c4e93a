"""Many clients persisting, searching and deleting at once through a real server.

200 persists from 20 concurrent clients, interleaved with searches and deletes: every
acknowledged persist is readable and found exactly once, deleted ones are gone, no 5xx,
and doctor is clean afterwards.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from search_api import doctor
from search_api.service import ResourceService
from server import start_server, stop_server
from storage.config import Settings

CLIENTS, PER_CLIENT = 20, 10


def test_concurrent_clients_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv")
    statuses: list[int] = []
    try:
        def work(client_no: int) -> list[tuple[str, str, str, bool]]:
            done = []
            with server.client("admin") as c:
                for i in range(PER_CLIENT):
                    word = f"conc{client_no}x{i}word"
                    body = f"{word} payload {client_no} {i} ".encode() * 50
                    r = c.post("/v1/ws-acme/resources", content=body, headers={
                        "X-Persist-Spec": json.dumps({"filename": f"{word}.txt",
                                                      "workflow-id": f"wf-{client_no}"})})
                    statuses.append(r.status_code)
                    assert r.status_code == 201, r.text
                    uri = r.json()["data"]["uri"]
                    s = c.get("/v1/ws-acme/resources/search",
                              params={"q": f"conc{(client_no + 1) % CLIENTS}x0word"})
                    statuses.append(s.status_code)
                    deleted = i % 4 == 3
                    if deleted:
                        d = c.delete("/v1/ws-acme/resources/by-uri", params={"uri": uri})
                        statuses.append(d.status_code)
                        assert d.status_code == 200, d.text
                    done.append((uri, word, hashlib.sha256(body).hexdigest(), deleted))
            return done

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [r for chunk in pool.map(work, range(CLIENTS)) for r in chunk]
        assert len(results) == CLIENTS * PER_CLIENT
        assert not [s for s in statuses if s >= 500]
        with server.client("admin") as c:
            for uri, word, sha, deleted in results:
                found = c.get("/v1/ws-acme/resources/search", params={"q": word}).json()
                uris = [item["uri"] for item in found["data"]["items"]]
                if deleted:
                    assert uris == [], word
                    assert c.get("/v1/ws-acme/resources/by-uri",
                                 params={"uri": uri}).status_code == 404
                else:
                    assert uris == [uri], word            # found exactly once
                    data = c.get("/v1/ws-acme/resources/content", params={"uri": uri}).content
                    assert hashlib.sha256(data).hexdigest() == sha
            listed = c.get("/v1/ws-acme/resources", params={"limit": 100}).json()
            assert listed["meta"]["total"] == sum(1 for r in results if not r[3])
    finally:
        stop_server(server)
    svc = ResourceService(Settings.from_env(server.home), log=lambda m: None)
    try:
        report = doctor.run(svc)
        assert report["ok"], report["problems"]
    finally:
        svc.close()

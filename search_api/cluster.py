"""Several `resources serve` nodes on one shared catalog (docs/scale-out.md).

A node is a data home: its own Tantivy index following the catalog's change log, the
catalog and the bytes shared (PostgreSQL + S3). This module is what a node does about
the others:

- **who it is**: a name kept in ``<home>/node.id`` (host name + a random suffix made once),
  so a restarted node is the same row, not a new one;
- **heartbeat**: ``serve`` writes its row every ``HEARTBEAT_EVERY`` seconds naming its
  index follower (the follower row carries the applied position, updated at each index
  commit); a node silent for ``LIVE_WITHIN`` seconds is no longer counted as live;
- **wait-for=all**: a write waits until every live node's index has applied it;
- **the listing** of ``GET /v1/{ws}/cluster``: nodes, positions and lag.

Liveness uses the wall clock, never the service's (test-settable) clock: nodes compare
each other's heartbeats, and a clock file moved for gc tests must not kill them.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from storage.catalog import NodeRow
from storage.clock import rfc3339

HEARTBEAT_EVERY = 1.0
LIVE_WITHIN = 10.0


def node_name(home: Path) -> str:
    path = home / "node.id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    name = f"{socket.gethostname()}-{secrets.token_hex(4)}"
    tmp = path.with_name(f".node.id.{os.getpid()}")
    tmp.write_text(name + "\n")
    try:
        os.link(tmp, path)          # the first process of this home names it
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class Cluster:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.catalog = service.catalog
        self.started_at = time.time()
        self._name: str | None = None

    @property
    def name(self) -> str:
        # Made on first use: a one-machine home that never asks gets no node.id file.
        if self._name is None:
            self._name = node_name(self.service.settings.home)
        return self._name

    def heartbeat(self) -> None:
        self.catalog.nodes.heartbeat(self.name, self.service.settings.public_url,
                                     self.service.index.follower_name, self.started_at,
                                     time.time())

    def leave(self) -> None:
        """A clean stop: the others stop waiting for this node at once."""
        self.catalog.nodes.remove(self.name)

    def wait_all(self, position: int, timeout: float) -> bool:
        """Block until every live node's index has applied ``position``; False when
        ``timeout`` seconds pass first. Polls the catalog (20 ms): each node's position
        moves at its own index commits, which the catalog records."""
        deadline = time.monotonic() + timeout
        while True:
            slowest, live = self.catalog.nodes.slowest_live(time.time(), LIVE_WITHIN)
            if live == 0 or slowest >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def status(self) -> dict[str, Any]:
        head = self.catalog.changes.head()
        now = time.time()
        nodes = []
        # A one-machine (SQLite) home writes no heartbeats: it lists itself.
        rows = self.catalog.nodes.list() if self.catalog.shared else [NodeRow(
            self.name, self.service.settings.public_url, self.service.index.follower_name,
            self.started_at, now, self.service.index.status()["position"])]
        for row in rows:
            position = row.position or 0
            since = self.catalog.changes.first_time_after(position) if position < head else None
            nodes.append({
                "name": row.name, "url": row.url, "this-node": row.name == self.name,
                "live": now - row.heartbeat_at <= LIVE_WITHIN,
                "index-follower": row.follower, "position": position,
                "behind": max(head - position, 0),
                "lag-seconds": round(max(now - since, 0.0), 3) if since else 0.0,
                "heartbeat-at": rfc3339(row.heartbeat_at),
                "started-at": rfc3339(row.started_at)})
        return {"head": head, "catalog": self.catalog.database.dialect, "nodes": nodes}

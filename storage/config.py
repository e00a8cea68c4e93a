"""Settings: where the data home is, the tiers and their limits, the public base URL."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True)
class Tier:
    name: str
    max_bytes: int
    retention_seconds: int


def default_tiers() -> dict[str, Tier]:
    env = os.environ
    return {
        "retained": Tier(
            "retained",
            int(env.get("RESOURCES_RETAINED_MAX_BYTES", 52_428_800)),
            int(env.get("RESOURCES_RETAINED_RETENTION_SECONDS", 365 * 86_400)),
        ),
        "ephemeral": Tier(
            "ephemeral",
            int(env.get("RESOURCES_EPHEMERAL_MAX_BYTES", 4_294_967_296)),
            int(env.get("RESOURCES_EPHEMERAL_RETENTION_SECONDS", 86_400)),
        ),
    }


#: The connection every install has: local files under the data home. A persist with no
#: slot, and the Breyta face's uploads, go here.
DEFAULT_CONNECTION = "platform"


@dataclass
class Settings:
    """Everything configurable, read once from the environment (or given by a test)."""

    home: Path
    tiers: dict[str, Tier] = field(default_factory=default_tiers)
    #: Base of the links the service hands out (webUrl, signed URLs).
    public_url: str = "http://127.0.0.1:8080"
    #: Bounds of content extraction (CONTRACT: indexing rules).
    extract_max_read: int = 10 * MiB
    extract_max_chars: int = 100_000
    pdf_max_pages: int = 50
    pdf_timeout_seconds: float = 5.0
    #: How long a CLI waits for another process's index writer before giving up.
    index_lock_wait_seconds: float = 30.0
    #: Interval of the retention sweep that `serve` runs.
    gc_interval_seconds: float = 300.0
    #: When `serve` answers a write: "durable" (blob and record saved; the index follows
    #: within a second) or "indexed" (also searchable; like wait-for=indexed on each).
    write_ack: str = "durable"
    #: Semantic and hybrid search (the local embedding model). False: the light install
    #: without the model; mode=semantic|hybrid then answers 501, never lexically.
    semantic: bool = True
    #: A ``postgresql://`` URL: the catalog several nodes share (docs/scale-out.md).
    #: None: the one-machine default, SQLite in the data home.
    catalog_url: str | None = None
    #: Index partitions (indexer/partitions.py), decided at each rebuild: workspaces with
    #: at least this many resources get a Tantivy index of their own (a query there
    #: costs what it would on that workspace alone), plus the named ones, at most
    #: ``index_partition_max`` in all; the rest share one.
    index_partition_min_docs: int = 50_000
    index_partition_workspaces: tuple[str, ...] = ()
    index_partition_max: int = 8

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None) -> "Settings":
        env = os.environ
        root = Path(home or env.get("RESOURCES_HOME") or "./.resources").resolve()
        s = cls(home=root)
        if env.get("RESOURCES_PUBLIC_URL"):
            s.public_url = env["RESOURCES_PUBLIC_URL"].rstrip("/")
        if env.get("RESOURCES_PDF_TIMEOUT_SECONDS"):
            s.pdf_timeout_seconds = float(env["RESOURCES_PDF_TIMEOUT_SECONDS"])
        if env.get("RESOURCES_GC_INTERVAL_SECONDS"):
            s.gc_interval_seconds = float(env["RESOURCES_GC_INTERVAL_SECONDS"])
        if env.get("RESOURCES_WRITE_ACK"):
            s.write_ack = env["RESOURCES_WRITE_ACK"]
            if s.write_ack not in ("durable", "indexed"):
                raise ValueError("RESOURCES_WRITE_ACK must be durable or indexed")
        if env.get("RESOURCES_SEMANTIC"):
            value = env["RESOURCES_SEMANTIC"].strip().lower()
            if value not in ("on", "off"):
                raise ValueError("RESOURCES_SEMANTIC must be on or off")
            s.semantic = value == "on"
        if env.get("RESOURCES_CATALOG_URL"):
            s.catalog_url = env["RESOURCES_CATALOG_URL"]
            if not s.catalog_url.startswith(("postgresql://", "postgres://")):
                raise ValueError("RESOURCES_CATALOG_URL must be a postgresql:// URL")
        if env.get("RESOURCES_INDEX_LOCK_WAIT_SECONDS"):
            s.index_lock_wait_seconds = float(env["RESOURCES_INDEX_LOCK_WAIT_SECONDS"])
        if env.get("RESOURCES_INDEX_PARTITION_MIN_DOCS"):
            s.index_partition_min_docs = int(env["RESOURCES_INDEX_PARTITION_MIN_DOCS"])
        if env.get("RESOURCES_INDEX_PARTITION_WORKSPACES"):
            s.index_partition_workspaces = tuple(
                w.strip() for w in env["RESOURCES_INDEX_PARTITION_WORKSPACES"].split(",")
                if w.strip())
        if env.get("RESOURCES_INDEX_PARTITION_MAX"):
            s.index_partition_max = int(env["RESOURCES_INDEX_PARTITION_MAX"])
        return s

    # Everything lives under the data home; blobs of the platform backend sit at their
    # CONTRACT path directly under it (home/workspaces/<ws>/...).
    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.db"

    @property
    def catalog_location(self) -> str | Path:
        """What the catalog opens: the shared database's URL, else the SQLite file."""
        return self.catalog_url or self.catalog_path

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def secret_path(self) -> Path:
        return self.home / "secret.key"

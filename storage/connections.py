"""Named storage connections and the backend registry the service builds them from.

``platform`` is always the local data home. Further connections come from a TOML file
(``RESOURCES_CONNECTIONS_FILE``, default ``<home>/connections.toml``)::

    [connections.archive]
    kind = "s3"
    endpoint = "http://127.0.0.1:8333"   # omit for AWS
    region = "us-east-1"
    bucket = "resources"
    prefix = "prod"                     # optional key prefix
    addressing = "path"                 # path | virtual | auto
    profile = "resources"               # optional: a profile of the AWS credentials file

or from one environment variable each, ``RESOURCES_CONNECTION_<NAME>`` =
``s3://BUCKET/PREFIX?endpoint=URL&region=R&addressing=path&profile=P`` (NAME is
lower-cased, ``_`` becomes ``-``; the environment wins over the file).

Credentials are never part of a connection: boto3's standard chain supplies them.
A file that tries to carry secrets is refused, so they cannot end up in a repository.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from .config import DEFAULT_CONNECTION
from .backend import StorageBackend
from .config import Settings
from .errors import InvalidSpec
from .local import LocalBackend
from .s3 import S3Backend, S3Config

ENV_PREFIX = "RESOURCES_CONNECTION_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SECRET_WORDS = ("secret", "access_key", "access-key", "password", "token", "session")
_KEYS = {"kind", "endpoint", "region", "bucket", "prefix", "addressing", "profile",
         "part_size", "parts_in_flight"}


def connections_file(settings: Settings) -> Path:
    env = os.environ.get("RESOURCES_CONNECTIONS_FILE")
    return Path(env) if env else settings.home / "connections.toml"


def _config(name: str, raw: Mapping[str, Any], where: str) -> S3Config:
    if not _NAME.match(name):
        raise InvalidSpec(f"{where}: connection name {name!r} is not valid")
    if name == DEFAULT_CONNECTION:
        raise InvalidSpec(f"{where}: 'platform' is the local data home and cannot be "
                          f"redefined (yet)")
    for k in raw:
        if any(w in k.lower() for w in _SECRET_WORDS):
            raise InvalidSpec(f"{where}: connection {name!r} must not hold credentials "
                              f"({k!r}); use the environment, a credentials-file profile or "
                              f"the AWS default chain")
    unknown = set(raw) - _KEYS
    if unknown:
        raise InvalidSpec(f"{where}: connection {name!r} has unknown settings "
                          f"{', '.join(sorted(unknown))}")
    kind = raw.get("kind", "s3")
    if kind != "s3":
        raise InvalidSpec(f"{where}: connection {name!r} has kind {kind!r}; only 's3' is known")
    if not raw.get("bucket"):
        raise InvalidSpec(f"{where}: connection {name!r} needs a bucket")
    addressing = raw.get("addressing", "auto")
    if addressing not in ("path", "virtual", "auto"):
        raise InvalidSpec(f"{where}: addressing must be path, virtual or auto")
    extra = {k: int(raw[k]) for k in ("part_size", "parts_in_flight") if k in raw}
    return S3Config(name=name, bucket=str(raw["bucket"]), endpoint=raw.get("endpoint") or None,
                    region=raw.get("region") or None, prefix=str(raw.get("prefix") or ""),
                    addressing=addressing, profile=raw.get("profile") or None, **extra)


def _from_url(name: str, url: str) -> S3Config:
    where = f"{ENV_PREFIX}{name.upper().replace('-', '_')}"
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidSpec(f"{where}: expected s3://BUCKET/PREFIX?endpoint=...&region=...")
    if parts.username or parts.password:
        raise InvalidSpec(f"{where}: credentials do not belong in the connection url")
    raw: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    raw.update(kind="s3", bucket=parts.netloc, prefix=parts.path.strip("/"))
    return _config(name, raw, where)


def load_connections(settings: Settings) -> dict[str, S3Config]:
    """Every configured connection except ``platform``, by name."""
    found: dict[str, S3Config] = {}
    path = connections_file(settings)
    if path.exists():
        with open(path, "rb") as fh:
            try:
                doc = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise InvalidSpec(f"{path}: {exc}") from None
        for name, raw in (doc.get("connections") or {}).items():
            if not isinstance(raw, dict):
                raise InvalidSpec(f"{path}: [connections.{name}] must be a table")
            found[name] = _config(name, raw, str(path))
    for var, value in os.environ.items():
        if var.startswith(ENV_PREFIX) and value:
            name = var[len(ENV_PREFIX):].lower().replace("_", "-")
            found[name] = _from_url(name, value)
    return found


def build_backends(settings: Settings) -> dict[str, StorageBackend]:
    """The service's backends by connection name; no network is touched here."""
    backends: dict[str, StorageBackend] = {
        DEFAULT_CONNECTION: LocalBackend(settings.home, settings.tmp_dir)}
    for name, cfg in load_connections(settings).items():
        backends[name] = S3Backend(cfg, settings.tmp_dir / "s3",
                                   spool_max=settings.extract_max_read,
                                   pdf_spool_max=settings.tiers["retained"].max_bytes)
    return backends

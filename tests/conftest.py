"""Shared fixtures: a fresh data home per test, the real fixture files, a service."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_api.service import ResourceService
from storage.config import Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Semantic search loads a model and embeds in the background: off for every test but
# the semantic ones (tests/indexer/test_semantic*.py turn it on for their own homes).
os.environ["RESOURCES_SEMANTIC"] = "off"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env(home)


@pytest.fixture
def service(settings: Settings):
    svc = ResourceService(settings, log=lambda msg: None)
    yield svc
    svc.close()


def files_under(root: Path) -> set[str]:
    """Every file below root (relative paths), to prove nothing new was written."""
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# A real `resources serve` shared by the HTTP API tests (tests/server.py); defined here so
# that every module gets the same session-scoped server, not one each.
from server import api_server  # noqa: E402,F401
# A real SeaweedFS for the S3 connection tests (tests/s3_server.py), one per session.
from s3_server import seaweedfs  # noqa: E402,F401
# A real PostgreSQL for the shared-catalog tests (tests/pg_server.py), one per session.
from pg_server import pg_url, postgres  # noqa: E402,F401


T0 = 1_800_000_000.0


class Clock:
    """The service's clock, controlled by a file (storage/clock.py): no sleeping."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(T0)

    def now(self) -> float:
        return float(self.path.read_text())

    def set(self, epoch: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(repr(float(epoch)))
        os.replace(tmp, self.path)      # a reader never sees a half-written file

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)


@pytest.fixture
def clock(tmp_path, monkeypatch) -> Clock:
    c = Clock(tmp_path / "clock")
    monkeypatch.setenv("RESOURCES_CLOCK_FILE", str(c.path))
    return c


@pytest.fixture
def svc(clock, service):
    """The service on a controlled clock."""
    return service


@pytest.fixture
def env(home, clock) -> dict:
    """Environment of an embedded CLI on the test's data home and clock."""
    from server import base_env
    e = base_env(home, clock.path)
    e["RESOURCES_WORKSPACE"] = "ws-acme"
    return e


def fresh_index_ids(home: Path) -> set[str]:
    """The live index as a new reader sees it (after another process committed)."""
    import tantivy
    index = tantivy.Index.open(str((home / "index").resolve()))
    searcher = index.searcher()
    if searcher.num_docs == 0:
        return set()
    hits = searcher.search(tantivy.Query.all_query(), searcher.num_docs).hits
    return {searcher.doc(address)["id"][0] for _, address in hits}

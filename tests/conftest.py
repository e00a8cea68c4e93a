"""Shared fixtures: a fresh data home per test, the real fixture files, a service."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_api.service import ResourceService
from storage.config import Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


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

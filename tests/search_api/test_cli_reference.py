"""Issue 20: the docs cannot go stale. docs/cli.md is generated from the commands;
docs/settings.md lists every RESOURCES_* variable the code reads; every option says
what it does and options with a fixed set of values offer them as choices."""
from __future__ import annotations

import re
from pathlib import Path

import click

from search_api.cli import main
from search_api.cli._reference import reference

ROOT = Path(__file__).resolve().parents[2]


def _commands(cmd: click.Command, path: str = "resources"):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_cli_reference_is_generated_and_current():
    on_disk = (ROOT / "docs" / "cli.md").read_text()
    assert on_disk == reference(), "docs/cli.md is stale: run `make docs`"
    for path, cmd in _commands(main):
        if not cmd.hidden:
            assert f"## `{path}`" in on_disk, path


def test_every_option_has_help_and_fixed_values_are_choices():
    missing = [(path, p.opts) for path, cmd in _commands(main) for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == []
    by_path = dict(_commands(main))
    for path, option in (("resources list", "tier"), ("resources search", "keyword_mode"),
                         ("resources persist", "tier"), ("resources workflow delete", "tier")):
        param = next(p for p in by_path[path].params if p.name == option)
        assert isinstance(param.type, click.Choice), (path, option)


def test_every_setting_the_code_reads_is_documented():
    settings = (ROOT / "docs" / "settings.md").read_text()
    used: set[str] = set()
    for folder in ("storage", "indexer", "search_api"):
        for source in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\bRESOURCES_[A-Z_]+\b", source.read_text()))
    used.discard("_RESOURCES_COMPLETE")
    undocumented = sorted(v for v in used if f"`{v}`" not in settings)
    assert undocumented == []


def test_help_shows_examples():
    for name in ("search", "list", "persist"):
        assert "Examples:" in (main.commands[name].epilog or ""), name

"""docs/cli.md, generated from the click commands themselves (`make docs`).

The reference is each command's own --help at a fixed width, so it cannot say anything
the CLI does not do; tests/search_api/test_cli_reference.py fails when the file is stale.
"""
from __future__ import annotations

import click

WIDTH = 88

INTRO = """# `resources` CLI reference

Generated from the commands' own help by `make docs` (do not edit by hand; a test fails
when this file is stale). For a first tour see the README's walkthrough; for every
environment variable, the config file and shell completion see
[settings.md](settings.md).

Every command that prints takes `--format table|json|uri`: `table` for people (the
default on a terminal; fits its width), `json` the API envelope (the default in a pipe),
`uri` the uris only, one a line (`URI=$(resources search revenue --format uri)`). Exit
codes: 0 success, 1 a user error (the message says what to do), 2 a usage or
configuration error.
"""


def _walk(cmd: click.Command, name: str, parent: click.Context | None):
    ctx = click.Context(cmd, info_name=name, parent=parent, terminal_width=WIDTH,
                        max_content_width=WIDTH, help_option_names=["-h", "--help"])
    yield name, ctx, cmd
    if isinstance(cmd, click.Group):
        for sub in sorted(cmd.commands):
            yield from _walk(cmd.commands[sub], sub, ctx)


def reference() -> str:
    from . import main
    parts = [INTRO]
    for _, ctx, cmd in _walk(main, "resources", None):
        if cmd.hidden:
            continue
        title = ctx.command_path
        parts.append(f"## `{title}`\n\n```\n{ctx.get_help()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    click.echo(reference(), nl=False)

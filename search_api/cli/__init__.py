"""The `resources` CLI: a thin layer over the API objects (embedded or remote).

Commands parse flags into the same parameters the HTTP API takes, call one method and
print the envelope (JSON) or a table that fits the terminal. Core errors become one line
on stderr and exit 1; usage and configuration errors exit 2 (click's own convention).

Modules: ``_config`` (where commands go: env, profiles), ``_context`` (opening the API,
errors, uri checks), ``_options`` (options from the filter spec), ``_resources``,
``_groups`` and ``_ops`` (the commands); ``search_api.output`` renders.
"""
from __future__ import annotations

import click

from . import _groups, _migrate, _ops, _resources, _snapshot

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100},
             epilog="""
\b
Where commands go (`resources status` shows it):
  remote    RESOURCES_API_URL + RESOURCES_API_KEY (workspace: the key's own)
  embedded  otherwise: the data home RESOURCES_HOME (default ./.resources if it
            exists, else ~/.local/share/resources), workspace RESOURCES_WORKSPACE
            (default `default`)
Profiles in ~/.config/resources/config.toml; docs/cli.md and docs/settings.md.
""")
@click.version_option("0.1.0", prog_name="resources")
@click.option("--profile", default=None, metavar="NAME",
              help="Profile of the config file to use (default: $RESOURCES_PROFILE or `default`).")
@click.pass_context
def main(ctx: click.Context, profile: str | None) -> None:
    """Persist, find and read workflow resources (res:// refs)."""
    ctx.obj = {"profile": profile}


for _cmd in (*_resources.COMMANDS, *_groups.GROUPS, *_ops.COMMANDS, _migrate.migrate,
             _snapshot.index_snapshot):
    main.add_command(_cmd)

from ..quota_cli import register as _register_quota  # noqa: E402
from ._context import format_option as _format_option, run as _run  # noqa: E402
_register_quota(main, _format_option, _run)          # resources quota show|set

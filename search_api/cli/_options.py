"""CLI options made from the one filter spec (indexer/filterspec.py), and completion of
slot names: the options, the HTTP whitelist and the OpenAPI parameters cannot drift."""
from __future__ import annotations

from typing import Any, Callable

import click
from click.shell_completion import CompletionItem

from indexer.filterspec import (FILTERS, KEYWORD_MODES, OPTIONS, PAGING, SEARCH_MODES, TIERS,
                                Param)


class CommaChoice(click.ParamType):
    """A comma list whose every item is one of ``choices`` (``--type file,result``)."""
    name = "list"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        bad = [v for v in items if v not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(bad) or repr(value)} is not one of "
                      f"{', '.join(self.choices)} (comma list)", param, ctx)
        return ",".join(items)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        done, _, last = incomplete.rpartition(",")
        prefix = f"{done}," if done else ""
        return [CompletionItem(prefix + c) for c in self.choices if c.startswith(last)]


def complete_slot(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Slot names of the current workspace (embedded or remote); nothing on any error,
    since a completion must never print an error into the user's command line."""
    try:
        from ._context import make_api
        with ctx:                 # completion runs outside any command: make it current
            api = make_api()
            try:
                items = api.slots_list()["data"]["items"]
            finally:
                api.close()
    except Exception:  # noqa: BLE001 - see docstring
        return []
    return [CompletionItem(s["slot"]) for s in items if s["slot"].startswith(incomplete)]


def _click_type(p: Param) -> Any:
    if p.integer:
        return click.IntRange(p.minimum, p.maximum)
    if p.comma_list:
        return CommaChoice(p.choices)
    if p.choices:
        return click.Choice(p.choices)
    return None


def _option(p: Param) -> Callable:
    kw: dict[str, Any] = {"default": None, "help": p.help, "type": _click_type(p)}
    if p.repeatable:
        kw.update(multiple=True, default=())
    if not p.choices:
        kw["metavar"] = p.metavar
    if p.name == "slot":
        kw["shell_complete"] = complete_slot
    if p.alias_of:
        kw["hidden"] = True           # accepted (the contract spells --types), not offered
    return click.option(p.option, p.name.replace("-", "_"), **kw)


CLI_FILTERS = FILTERS + tuple(p for p in OPTIONS if p.name != "exact-total")


def filter_options(f: Callable) -> Callable:
    """Every filter of the spec (aliases hidden from help), then --limit and --cursor."""
    for p in reversed(CLI_FILTERS + PAGING):
        f = _option(p)(f)
    # A flag on the command line (the wire form is exact-total=true).
    return click.option("--exact-total", "exact_total", is_flag=True, default=False,
                        help="Count every match (else past 10,000 meta.total is a lower "
                             "bound, meta.total-relation gte).")(f)


def paging_options(f: Callable) -> Callable:
    for p in reversed(PAGING):
        f = _option(p)(f)
    return f


def collect_filters(kwargs: dict) -> dict:
    """Pop the filter options out of a command's kwargs as API parameters."""
    params: dict[str, Any] = {}
    if kwargs.pop("exact_total", False):
        params["exact-total"] = "true"
    for p in CLI_FILTERS:
        value = kwargs.pop(p.name.replace("-", "_"))
        if isinstance(value, tuple):
            value = list(value)
        if value not in (None, [], ""):
            params[p.name] = value
    return params


keyword_mode_option = click.option(
    "--keyword-mode", type=click.Choice(KEYWORD_MODES), default="all", show_default=True,
    help="all: every word must match; any: any word; balanced: any word, documents "
         "matching more words first.")

search_mode_option = click.option(
    "--mode", type=click.Choice(SEARCH_MODES), default="lexical", show_default=True,
    help="lexical: words; semantic: meaning (local embedding model); hybrid: both, "
         "fused by reciprocal rank (docs/search.md).")

tier_choice = click.Choice(TIERS)

"""What every command shares: opening the API (embedded or remote), printing the
envelope, turning core errors into one line and an exit code, and telling the user
precisely what is wrong with a uri before anything is asked of the service."""
from __future__ import annotations

import functools
import sqlite3
import inspect
import re
import sys
from typing import Any, Callable

import click

from storage.errors import BadRequest, ResourceError
from storage.records import make_uri

from ..output import FORMATS, default_format, emit, emit_error
from ..remote import WrongWorkspace
from . import _config

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
URI = re.compile(r"^res://v1/ws/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/(file|result)/(" + ULID.pattern
                 + r")$")
WEB_URL = re.compile(r"^https?://[^/]+/ui/([^/]+)/resources/(" + ULID.pattern + r")/?$")


class InvalidUri(BadRequest):
    code = "invalid_uri"


def config() -> _config.ClientConfig:
    """The resolved configuration of this invocation (cached on the click context)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    root.obj = obj
    if "config" not in obj:
        obj["config"] = _config.load(obj.get("profile"))
    return obj["config"]


def make_api() -> Any:
    cfg = config()
    if cfg.mode == "remote":
        from ..remote import RemoteApi
        return RemoteApi(cfg.url, cfg.key, cfg.workspace)
    from storage.config import Settings

    from ..api import EmbeddedApi
    if not cfg.home.exists() and cfg.sources.get("home", "").startswith("default"):
        click.echo(f"note: creating the data home {cfg.home} (set RESOURCES_HOME to use "
                   f"another)", err=True)
    return EmbeddedApi(cfg.workspace, Settings.from_env(cfg.home))


def fail(exc: ResourceError, fmt: str) -> None:
    emit_error(exc, fmt)
    sys.exit(exc.exit_code)


def damaged(exc: Exception) -> ResourceError:
    """SQLite failed while answering: a full disk, or damage (the same clear error as
    at start)."""
    from storage.errors import CatalogDamaged, translate_unexpected
    typed = translate_unexpected(exc)
    if typed is not None:
        return typed
    return CatalogDamaged(f"the catalog is damaged ({exc}); run `resources doctor` and "
                          f"see docs/recovery.md")


def run(fn: Callable[..., dict | None]) -> Callable:
    """Open the API, call the command, print its envelope; map core errors to their
    exit code in this one place."""
    wants_fmt = "fmt" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, fmt: str | None = None, **kwargs: Any) -> None:
        fmt = fmt or default_format()
        try:
            api = make_api()
        except ResourceError as exc:
            fail(exc, fmt)
        try:
            if wants_fmt:
                kwargs["fmt"] = fmt
            env = fn(api, *args, **kwargs)
            if env is not None:
                emit(env, fmt)
        except ResourceError as exc:
            fail(exc, fmt)
        except sqlite3.DatabaseError as exc:
            fail(damaged(exc), fmt)
        finally:
            api.close()
    return wrapper


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                        help="table for people (default on a terminal), json: the API "
                             "envelope (default when piped), uri: only the uris, one a "
                             "line. Default: $RESOURCES_FORMAT.")(f)


def check_uri(api: Any, uri: str) -> None:
    """Refuse what is not a uri of this workspace, saying what it is and what to type.

    Nothing here asks the server about other workspaces: a uri names its workspace in
    its own text, so saying "this uri is of workspace X" tells nothing new."""
    m = URI.match(uri)
    if m:
        if m.group(1) != api.workspace:
            raise WrongWorkspace(
                f"{uri} is in workspace {m.group(1)!r}, but this command works on "
                f"{api.workspace!r}: set RESOURCES_WORKSPACE={m.group(1)} (embedded) or use "
                f"a key of that workspace (remote); `resources status` shows the current one")
        return
    web = WEB_URL.match(uri)
    if web:
        ws, id_ = web.group(1), web.group(2)
        raise InvalidUri(f"that is a web link, not a uri; did you mean "
                         f"{_suggest(api, ws, id_)}?")
    if ULID.fullmatch(uri):
        raise InvalidUri(f"{uri} is a bare id, not a uri; did you mean "
                         f"{_suggest(api, api.workspace, uri)}?")
    raise InvalidUri(f"{uri!r} is not a resource uri; a uri reads "
                     f"res://v1/ws/<workspace>/<file|result>/<id> (see `resources list`)")


def _suggest(api: Any, workspace: str, id_: str) -> str:
    """The exact uri when the id is a resource of this workspace, else the pattern."""
    if workspace == api.workspace:
        for type_ in ("file", "result"):
            candidate = make_uri(workspace, type_, id_)
            try:
                api.get(candidate)
                return candidate
            except ResourceError:
                continue
    return make_uri(workspace, "<file|result>", id_)


def wait_option(f: Callable) -> Callable:
    """--wait/--no-wait on a write: return only once searches show the change. Embedded,
    writes wait by default (so `persist` then `search` finds it); through the API the
    server's default applies (durable) unless --wait asks for wait-for=indexed."""
    @functools.wraps(f)
    def wrapper(api: Any, *args: Any, wait: bool | None = None, **kwargs: Any) -> Any:
        api.wait = wait
        return f(api, *args, **kwargs)
    return click.option("--wait/--no-wait", "wait", default=None,
                        help="Return once the change is searchable (embedded default: "
                             "wait; remote default: once durable).")(wrapper)

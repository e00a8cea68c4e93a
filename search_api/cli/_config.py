"""Where the CLI works: remote (a server URL and key) or embedded (a local data home).

Each setting comes from, first to last: the environment (``RESOURCES_API_URL``,
``RESOURCES_API_KEY``, ``RESOURCES_WORKSPACE``, ``RESOURCES_HOME``), then the chosen
profile of the config file (``$RESOURCES_CONFIG``, default
``$XDG_CONFIG_HOME/resources/config.toml``)::

    [default]
    url = "http://127.0.0.1:8080"
    key = "rk_..."

    [local]
    home = "~/work/.resources"
    workspace = "ws-acme"

A URL without a key is an error, never a silent fall-back to embedded mode. Embedded,
the data home is ``./.resources`` when that folder exists (what ``make run`` uses), else
``$XDG_DATA_HOME/resources``; never a new folder in whatever directory you stand in.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from storage.errors import BadRequest

PROFILE_KEYS = ("url", "key", "workspace", "home")
DEFAULT_WORKSPACE = "default"


class ConfigError(BadRequest):
    """The CLI is set up wrongly (exit 2 like a usage error: nothing was attempted)."""
    code = "config_error"
    exit_code = 2


@dataclass
class ClientConfig:
    url: str | None
    key: str | None
    workspace: str | None
    home: Path
    #: Where each value came from, for `resources status` ("RESOURCES_HOME", "profile
    #: default", "./.resources exists", ...).
    sources: dict[str, str]
    profile: str
    config_file: Path

    @property
    def mode(self) -> str:
        return "remote" if self.url else "embedded"


def config_file() -> Path:
    explicit = os.environ.get("RESOURCES_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "resources" / "config.toml"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return Path(base) / "resources"


def _read_profiles(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None


def load(profile: str | None = None) -> ClientConfig:
    env = os.environ
    path = config_file()
    profiles = _read_profiles(path)
    name = profile or env.get("RESOURCES_PROFILE") or "default"
    section = profiles.get(name)
    if section is None:
        if profile or env.get("RESOURCES_PROFILE"):
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"no profile {name!r} in {path} (profiles: {known})")
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"[{name}] in {path} must be a table of {', '.join(PROFILE_KEYS)}")
    unknown = sorted(set(section) - set(PROFILE_KEYS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in [{name}] of {path}; "
                          f"known: {', '.join(PROFILE_KEYS)}")
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for key, var in (("url", "RESOURCES_API_URL"), ("key", "RESOURCES_API_KEY"),
                     ("workspace", "RESOURCES_WORKSPACE"), ("home", "RESOURCES_HOME")):
        if env.get(var):
            values[key], sources[key] = env[var], var
        elif section.get(key):
            values[key], sources[key] = str(section[key]), f"profile {name} ({path})"
        else:
            values[key] = None
    if values["url"] and not values["key"]:
        raise ConfigError(
            f"remote mode needs a key: {sources['url']} sets the server ({values['url']}) but "
            f"no key is set. Export RESOURCES_API_KEY=rk_... (`make run` prints one), or "
            f"unset RESOURCES_API_URL to work on a local data home.")
    if values["key"] and not values["url"]:
        raise ConfigError(
            f"{sources['key']} sets a key but no server: export RESOURCES_API_URL "
            f"(e.g. http://127.0.0.1:8080), or unset RESOURCES_API_KEY to work embedded.")
    if values["home"]:
        home = Path(values["home"]).expanduser().resolve()
    elif Path(".resources").is_dir():
        home, sources["home"] = Path(".resources").resolve(), "./.resources exists here"
    else:
        home, sources["home"] = data_dir(), "default (XDG data dir)"
    if not values["url"] and not values["workspace"]:
        values["workspace"], sources["workspace"] = DEFAULT_WORKSPACE, "default"
    if values["url"] and not values["workspace"]:
        sources["workspace"] = "the key's own workspace"
    return ClientConfig(url=values["url"], key=values["key"], workspace=values["workspace"],
                        home=home, sources=sources, profile=name, config_file=path)

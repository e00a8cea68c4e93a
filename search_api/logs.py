"""Structured logs: one JSON object per line (or a readable line on a terminal).

Everything `serve` says goes through the standard ``logging`` tree: our request and
background-job lines, uvicorn's own errors, the service's notes. ``configure`` installs
one handler on the root logger with either formatter.

A log line must never carry a secret. The callers only pass safe fields (route
templates, never raw paths or query strings; key ids, never keys), and the formatters
scrub the finished line once more (``redact``) as the last line of defence: an API key,
a bearer token, a signed-URL token or a session cookie that slipped into an exception
message is replaced by ``[redacted]``.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

#: The id of the request being served (set by the middleware, read by every log line
#: written while serving it, threads of the pool included: contextvars are copied).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None)

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")

_SECRETS = [
    # API keys: rk_<id>_<secret>; the id is not secret, but one regex keeps it simple.
    (re.compile(r"rk_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"), "rk_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    # Signed-URL tokens are path segments: /signed/<payload>.<mac>
    (re.compile(r"(/signed/)(?!\{)[^\s\"'?#]+"), r"\1[redacted]"),
    # Cookies (the web view's signed session) and any key=value that names a secret.
    # (a bare "key" is left alone: route templates read {key:kvkey}).
    (re.compile(r"(?i)(\b(?:cookie|set-cookie|token|secret|password|signature)"
                r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    if not isinstance(fields, dict):
        return {}
    return {k: v for k, v in fields.items() if v is not None}


def _ts(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": _ts(record.created), "level": record.levelname.lower(),
                                "logger": record.name, "msg": record.getMessage()}
        rid = request_id_var.get()
        if rid is not None:
            line["request_id"] = rid
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <msg> k=v ...``: the same facts, for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record.created), f"{record.levelname:<7}", record.getMessage()]
        rid = request_id_var.get()
        fields = _fields(record)
        if rid is not None and "request_id" not in fields:
            fields["request_id"] = rid
        parts += [f"{k}={v}" for k, v in fields.items() if v is not None and k != "event"]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def default_format(stream: Any = None) -> str:
    stream = stream or sys.stderr
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def configure(level: str = "info", fmt: str | None = None, stream: Any = None) -> None:
    """One handler on the root logger (stderr), replacing any earlier one of ours."""
    stream = stream or sys.stderr
    fmt = fmt or default_format(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._resources = True  # type: ignore[attr-defined] - marks our handler
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_resources", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers would otherwise keep their own handlers (double lines, plain
    # text); its access log is replaced by our request line, which never logs a raw
    # path (signed-URL tokens live in paths).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields`` (they become JSON keys)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})


def service_logger(name: str = "resources.service") -> Any:
    """A ``log(msg)`` callable for ResourceService (its notes and recovery reports)."""
    lg = logging.getLogger(name)

    def emit(msg: str) -> None:
        level = logging.WARNING if msg.startswith(("error", "warning")) else logging.INFO
        lg.log(level, msg)
    return emit

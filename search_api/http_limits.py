"""Connection limits uvicorn's httptools protocol does not have: a cap on the size of a
request's head (URL + headers) and a deadline for receiving it.

Without them one anonymous client could send a growing header forever (RSS rose by the
header's size, and the event loop spent its time parsing it) or hold thousands of
connections open with half a request line. A head over the cap is answered with
431 Request Header Fields Too Large; a head not complete within the deadline closes the
connection. Bodies are not affected: they stream through the routes, with their own
limits.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0


class _HeadTooLarge(Exception):
    pass


def _limit(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Read its limits from the environment that ``protocol()`` set: with ``serve
    --workers N`` uvicorn starts worker processes, which inherit the environment but
    not a class made at run time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = int(_limit("RESOURCES_MAX_HEADER_BYTES",
                                           DEFAULT_MAX_HEADER_BYTES))
        self.header_timeout = _limit("RESOURCES_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the deadline for a request head -----------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()            # a connection that never sends a head is dropped

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    # -- the size of a request head ----------------------------------------------------
    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return                        # already answered; the connection is closing
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        body = json.dumps({"error": {
            "code": "header_too_large",
            "message": f"request line and headers exceed {self.max_header_bytes:,} bytes"}})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body.encode())
        self.transport.close()


def protocol(max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
             header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to hand to ``uvicorn.run(http=...)`` with these limits."""
    os.environ["RESOURCES_MAX_HEADER_BYTES"] = str(max_header_bytes)
    os.environ["RESOURCES_HEADER_TIMEOUT"] = str(header_timeout)
    return BoundedHttpToolsProtocol

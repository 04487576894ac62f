"""A deadline for receiving each HTTP request, which uvicorn does not have.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) but waits forever for a
request that arrives slowly: a client trickling its headers a byte at a time, or a connection
opened and never written to, holds its socket and memory as long as it likes (issue 15's probe
held 50 trickling clients and 2,000 half-open connections for 30 s). `ReceiptDeadline` is
uvicorn's httptools protocol with one more timer: from the connection's start (or the first
byte of a later request on it) until the request's last body byte has arrived, at most
`HTTP_REQUEST_TIMEOUT_SECONDS`. Past it the client gets a 408 and the connection is closed;
an app already reading the body sees the client as gone. The time the app takes to answer is
not counted, nor is a keep-alive connection's idle time between requests.

`taskflow serve` runs uvicorn with `http="taskflow.deadline:ReceiptDeadline"` (the uvicorn
command line: `--http taskflow.deadline:ReceiptDeadline`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from taskflow.core.config import get_settings

PROTOCOL = "taskflow.deadline:ReceiptDeadline"

_TIMEOUT_BODY = b"the request did not arrive in time: send the headers and body without pauses\n"
_TIMEOUT = b"".join(
    [
        b"HTTP/1.1 408 Request Timeout\r\n",
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        _TIMEOUT_BODY,
    ]
)


class ReceiptDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request takes too long to
    arrive (`HTTP_REQUEST_TIMEOUT_SECONDS`; 0 turns the deadline off)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receipt_limit = get_settings().http_request_timeout_seconds
        self._receipt: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a later request on a kept-alive connection: its own clock

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._receipt is None and self._receipt_limit > 0:
            self._receipt = self.loop.call_later(self._receipt_limit, self._expired)

    def _disarm(self) -> None:
        if self._receipt is not None:
            self._receipt.cancel()
            self._receipt = None

    def _expired(self) -> None:
        self._receipt = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.more_body:
            cycle = None  # that request arrived whole: this is the next one, not begun
        if cycle is not None:
            cycle.disconnected = True  # an app waiting for the body hears the client left
            cycle.message_event.set()
            if cycle.response_started:  # answered already (or too late for a 408)
                self.transport.close()
                return
        self.transport.write(_TIMEOUT)
        self.transport.close()

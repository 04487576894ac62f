"""The request id: taken from `X-Request-ID` or made up, echoed back, written to audit entries
(what an id is and where it is kept: `taskflow.core.request_id`).

A frontend (or a proxy) that sends its own id can find the audit entries a request wrote and
the server log lines about it. An id that is not short printable ASCII is replaced rather than
stored, since the audit log keeps it forever.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.core.request_id import HEADER, SCOPE_KEY, accepted_id

__all__ = ["HEADER", "SCOPE_KEY", "RequestIdMiddleware", "accepted_id"]


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so it adds nothing measurable per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accepted_id(incoming)
        scope[SCOPE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)

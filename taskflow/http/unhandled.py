"""A bug becomes a logged 500 problem document, inside the CORS and request-id middleware.

Starlette sends an `Exception` handler's answer from its outermost layer, past every user
middleware, so a 500 would reach a browser without CORS headers (unreadable to the frontend) and
without `X-Request-ID` (the one thing that finds the log line). This middleware sits innermost
and answers there instead.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.http.problems import internal_error


class UnhandledErrors:
    """Pure ASGI: catch what the route raised, answer 500 if nothing was sent yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:  # too late for a problem document: let the server close the connection
                raise
            await internal_error(Request(scope), exc)(scope, receive, send)

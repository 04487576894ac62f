"""MCP over Streamable HTTP, as an ASGI app the composition root mounts.

Stateless with JSON responses, so any replica can answer any request and nothing is kept
between requests. Bearer auth (configured in `build_mcp`) answers 401 with a `WWW-Authenticate`
header pointing at the RFC 9728 metadata; Host and Origin are checked against the settings
(DNS-rebinding protection). Mount the app at "/" *last* in the parent: it serves `/mcp` and
`/.well-known/oauth-protected-resource/mcp`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.core.config import Settings
from taskflow.core.errors import Unavailable
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.identity import AUTH_OUTAGE

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
RETRY_AFTER_SECONDS = 5


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Accept only the configured Host values, and Origins of those hosts or ALLOWED_ORIGINS.

    A page served by an allowed host is same-site; any other page's requests (a rebinding
    attack's `Origin: http://evil.example`) are refused with 403, an unknown Host with 421.
    """
    hosts = [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    origins = [*settings.origins]
    for host in hosts:
        for scheme in ("http", "https"):
            origins.append(f"{scheme}://{host}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=list(dict.fromkeys(origins)),
    )


class UnavailableGuard:
    """Answers 503 (not 401) when a token could not be checked because a dependency is down.

    The token verifier records the outage in `AUTH_OUTAGE` and lets the SDK refuse the request;
    this wrapper swaps that refusal for a 503 with Retry-After, so a client retries later
    instead of discarding a good token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        outages: list[Unavailable] = []
        swapped = False

        async def guarded_send(message: Message) -> None:
            nonlocal swapped
            if message["type"] == "http.response.start" and outages and message["status"] == 401:
                swapped = True
                await self._unavailable(send, outages[0])
            elif not (swapped and message["type"] == "http.response.body"):
                await send(message)

        token = AUTH_OUTAGE.set(outages)
        try:
            await self.app(scope, receive, guarded_send)
        finally:
            AUTH_OUTAGE.reset(token)

    @staticmethod
    async def _unavailable(send: Send, exc: Unavailable) -> None:
        log.warning("MCP request refused, dependency unavailable: %s", exc)
        body = json.dumps({"error": "temporarily_unavailable", "error_description": str(exc)})
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


def mcp_asgi(
    runtime: Runtime, mcp: MCPServer
) -> tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[None]]]:
    """The MCP ASGI app and a factory for the context manager the parent's lifespan must enter.

    Starlette does not run a mounted app's lifespan, so the parent enters the factory's context
    (`async with lifespan(): yield`); it can be entered once. Build the pair once per parent app.
    """
    # Stateless, every request ends its own "session", which the SDK logs at INFO
    # ("Terminating session: None"): a line per tool call that says nothing. Warnings still show.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(runtime.settings),
    )
    return UnavailableGuard(app), mcp.session_manager.run

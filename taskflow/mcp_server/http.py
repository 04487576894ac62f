"""MCP over Streamable HTTP, as an ASGI app the composition root mounts.

Stateless with JSON responses, so any replica can answer any request and nothing is kept
between requests. Bearer auth (configured in `build_mcp`) answers 401 with a `WWW-Authenticate`
header pointing at the RFC 9728 metadata; in local mode, where a request may come without a
token, a token that is sent is still checked here and a bad one answers the same 401. Host and
Origin are checked against the settings (DNS-rebinding protection). `GET /mcp` answers 405:
without sessions there is no standalone stream; resource subscriptions are 2026-07-28
`subscriptions/listen` requests, whose response is the stream (decision 75). Mount the app at
"/" *last* in the parent: it serves `/mcp` and `/.well-known/oauth-protected-resource/mcp`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.core.auth.identity import bearer_challenge, bearer_token, resolve_actor
from taskflow.core.config import Settings
from taskflow.core.domain import Via
from taskflow.core.errors import Unauthenticated, Unavailable
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.identity import AUTH_OUTAGE, VERIFIED_ACTOR
from taskflow.mcp_server.server import TaskflowMCP

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
RETRY_AFTER_SECONDS = 5


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Accept only the configured Host values, and Origins of those hosts or ALLOWED_ORIGINS.

    A page served by an allowed host is same-site; any other page's requests (a rebinding
    attack's `Origin: http://evil.example`) are refused with 403, an unknown Host with 421.
    """
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.hosts,
        allowed_origins=settings.trusted_origins,
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


async def _send_json(
    send: Send, status: int, body: dict[str, str], headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class NoStream:
    """`GET /mcp` answers 405 (the spec's answer for a server without a standalone stream):
    stateless, there is no session such a stream would belong to."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == MCP_PATH:
            body = {"error": "method_not_allowed", "error_description": NO_STREAM}
            await _send_json(send, 405, body, [(b"allow", b"POST, DELETE")])
            return
        await self.app(scope, receive, send)


class WholeBody:
    """Read a POST's body before the SDK runs, and let a caller who hangs up mid-body go.

    The SDK reads the body itself and logs a caller's disconnect as an ERROR with a traceback
    ("Error handling POST request", `ClientDisconnect`): for a client that went away, which is no
    error of ours. Read here, the body is replayed to the SDK as one message.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


NO_STREAM = (
    "no standalone stream on this stateless server: POST JSON-RPC requests to /mcp; to hear "
    "of changes, POST subscriptions/listen (protocol 2026-07-28), call list_changes, "
    "or GET /api/events"
)


class LocalBearer:
    """Local mode: a request may come without a token (it acts as the local user), but a token
    that is sent must be good. A bad one answers 401 with `WWW-Authenticate`, as with SDK auth,
    rather than running the call as nobody; a good one is resolved once, for `Identity`."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = Headers(scope=scope).get("authorization") if scope["type"] == "http" else None
        if sent is None:
            await self.app(scope, receive, send)
            return
        try:
            actor = await resolve_actor(self.runtime.auth, Via.MCP, token=bearer_token(sent))
        except Unauthenticated as exc:
            body = {"error": "invalid_token", "error_description": str(exc)}
            challenge = bearer_challenge(str(exc)).encode()
            await _send_json(send, 401, body, [(b"www-authenticate", challenge)])
            return
        except Unavailable as exc:
            await UnavailableGuard._unavailable(send, exc)
            return
        reset = VERIFIED_ACTOR.set(actor)
        try:
            await self.app(scope, receive, send)
        finally:
            VERIFIED_ACTOR.reset(reset)


def mcp_asgi(
    runtime: Runtime, mcp: TaskflowMCP
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
    guarded: ASGIApp = LocalBearer(app, runtime) if mcp.local_mode else UnavailableGuard(app)
    return NoStream(WholeBody(guarded)), mcp.session_manager.run

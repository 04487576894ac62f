"""The one middleware layer: same site only, the request id, CORS, and a bug answered as a 500.

Three layers did this (request id, Starlette's CORS, unhandled errors), each wrapping `send`
and reading the headers again; together they cost more than the rest of the routing. One pure
ASGI layer does it in a single pass over the request headers and a single `send` wrapper:

- same site only (`same_site.refusal`): a Host the server does not answer to is a 421, a page
  on a foreign Origin a 403, before anything runs;
- the request ids: a fresh server id, and the caller's `X-Request-ID` (as sent, when safe to
  keep) beside it, left in the scope (`SCOPE_KEY`, `CLIENT_SCOPE_KEY`) for the audit entries;
  the response carries the server's in `X-Request-ID` and the client's in
  `X-Client-Request-ID`;
- CORS: a request with an `Origin` (a browser's) goes through Starlette's `CORSMiddleware`,
  preflights included; any other request only gets the `Vary: Origin` it would add;
- a caller that disconnects mid-request is let go quietly (no traceback, no answer);
- a bug: Starlette sends an `Exception` handler's answer from its outermost layer, past every
  user middleware, so a 500 would reach a browser without CORS headers (unreadable to the
  frontend) and without `X-Request-ID` (the one thing that finds the log line). Here it is
  answered inside both, unless the response had already started.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.core.request_id import CLIENT_SCOPE_KEY, SCOPE_KEY, client_id, new_id
from taskflow.http.problems import internal_error, problem_response
from taskflow.http.same_site import refusal

_REQUEST_ID = b"x-request-id"
_CLIENT_REQUEST_ID = b"x-client-request-id"
_ORIGIN = b"origin"
_HOST = b"host"
_VARY = b"vary"


class Edge:
    """Pure ASGI; `hosts` and `trusted_origins` are the same-site lists (`Settings`), `cors`
    holds CORSMiddleware's keyword arguments."""

    def __init__(
        self, app: ASGIApp, *, hosts: list[str], trusted_origins: list[str], **cors: object
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.trusted_origins = trusted_origins
        self.cors = CORSMiddleware(self._answer, **cors)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = origin = None
        host = ""
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                incoming = value.decode("latin-1")
            elif name == _ORIGIN:
                origin = value.decode("latin-1")
            elif name == _HOST:
                host = value.decode("latin-1")
        browser = origin is not None
        request_id = new_id()
        scope[SCOPE_KEY] = request_id
        stamp = request_id.encode("latin-1")
        theirs = client_id(incoming)
        scope[CLIENT_SCOPE_KEY] = theirs
        echo = None if theirs is None else theirs.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_id(
                    message.get("headers", ()), stamp, vary=not browser, client=echo
                )
            await send(message)

        refused = refusal(host, origin, self.hosts, self.trusted_origins)
        if refused is not None:
            await problem_response(Request(scope), *refused)(scope, receive, send_with_id)
        elif browser:
            await self.cors(scope, receive, send_with_id)
        else:
            await self._answer(scope, receive, send_with_id)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app; what it raises before answering becomes a logged 500 problem document."""
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except ClientDisconnect:  # the caller left mid-request: no one to answer, nothing to log
            return
        except Exception as exc:
            if started:  # too late for a problem document: let the server close the connection
                raise
            await internal_error(Request(scope), exc)(scope, receive, send)


def _with_id(
    headers: Sequence[tuple[bytes, bytes]],
    request_id: bytes,
    *,
    vary: bool,
    client: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """The response headers with `Origin` added to `Vary` (for a request without an Origin, as
    CORSMiddleware does: the Vary values merged into one header) and our `x-request-id`
    (replacing any), in the order the separate layers wrote them."""
    out = []
    varies = []
    at = -1
    for key, value in headers:
        lowered = key.lower()
        if lowered in (_REQUEST_ID, _CLIENT_REQUEST_ID):
            continue
        if vary and lowered == _VARY:
            if at < 0:
                at = len(out)
                out.append((_VARY, b""))
            varies.append(value)
            continue
        out.append((key, value))
    if vary:
        merged = b", ".join([*varies, b"Origin"])
        if at < 0:
            out.append((_VARY, merged))
        else:
            out[at] = (_VARY, merged)
    out.append((_REQUEST_ID, request_id))
    if client is not None:
        out.append((_CLIENT_REQUEST_ID, client))
    return out

"""Requests from this site only: the Host must be one the server answers to, and a page that
sends a request must be the frontend or the server's own.

Without this, `serve --no-auth` (which acts as the local user for any loopback request) would do
whatever any web page asked: a form on `evil.example` posting to `/api/tasks/1/approve` carries
no token and needs none, and DNS rebinding would let such a page read the answers too. MCP over
HTTP checks the same lists (`Settings.hosts`, `Settings.trusted_origins`) through the SDK.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from taskflow.core.config import Settings
from taskflow.http.problems import problem_response


def matches(value: str, allowed: list[str]) -> bool:
    """Exactly one of `allowed`, or `name:*` with any port, as the MCP SDK matches them."""
    return value in allowed or any(
        a.endswith(":*") and value.startswith(a[:-1]) and value[len(a) - 1 :].isdigit()
        for a in allowed
    )


def refusal(
    host: str, origin: str | None, hosts: list[str], origins: list[str]
) -> tuple[int, str] | None:
    """(status, detail) when the request is not from this site, else None."""
    if not matches(host, hosts):
        return 421, f"this server does not answer to Host {host!r}: set ALLOWED_HOSTS"
    if origin is not None and not matches(origin, origins):
        return 403, f"requests from pages on {origin} are refused: set ALLOWED_ORIGINS"
    return None


class SameSite:
    """Pure ASGI: 421 for a Host the server does not answer to, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = settings.hosts
        self.origins = settings.trusted_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = refusal(headers.get("host", ""), headers.get("origin"), self.hosts, self.origins)
        if refused is None:
            await self.app(scope, receive, send)
        else:
            await problem_response(Request(scope), *refused)(scope, receive, send)

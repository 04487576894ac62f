"""Requests from this site only: the Host must be one the server answers to, and a page that
sends a request must be the frontend or the server's own.

Without this, `serve --no-auth` (which acts as the local user for any loopback request) would do
whatever any web page asked: a form on `evil.example` posting to `/api/tasks/1/approve` carries
no token and needs none, and DNS rebinding would let such a page read the answers too. MCP over
HTTP checks the same lists (`Settings.hosts`, `Settings.trusted_origins`) through the SDK.
The check runs in the one middleware layer, `http/edge.py`.
"""

from __future__ import annotations


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

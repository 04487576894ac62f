"""The request ids every surface writes to audit entries: one per request, kept forever.

Each HTTP request gets a server-made id (`request_id` on its audit entries, and the response's
`X-Request-ID`); a client's own `X-Request-ID` is kept beside it, as sent, when it is short
printable ASCII (`client_request_id` on the entries, echoed in `X-Client-Request-ID`), and
dropped otherwise. A client can therefore find its requests by its own id, but can never make
an entry claim another request's server id. The REST middleware leaves both in the ASGI scope
(`SCOPE_KEY`, `CLIENT_SCOPE_KEY`); anything served behind it (the MCP endpoint too) reads them
from there, so a response's headers and its audit entries always name the same ids.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

HEADER = "X-Request-ID"
CLIENT_HEADER = "X-Client-Request-ID"
SCOPE_KEY = "taskflow.request_id"
CLIENT_SCOPE_KEY = "taskflow.client_request_id"
_VALID = re.compile(r"^[\x21-\x7e]{1,100}$")


def new_id() -> str:
    """A fresh server-made id."""
    return uuid.uuid4().hex


def client_id(value: str | None) -> str | None:
    """The client's id when it is safe to keep (short printable ASCII), else None."""
    if value and _VALID.match(value):
        return value
    return None


def accepted_id(value: str | None) -> str:
    """The client's id when it is safe to keep, otherwise a fresh one (for ids that are not a
    server's, such as a stdio call's)."""
    return client_id(value) or new_id()


def from_scope(scope: Mapping[str, Any] | None) -> str | None:
    """The id the middleware made for this request, or None outside one."""
    if scope is None:
        return None
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


def client_from_scope(scope: Mapping[str, Any] | None) -> str | None:
    """The client's own id for this request (as sent), or None."""
    if scope is None:
        return None
    value = scope.get(CLIENT_SCOPE_KEY)
    return value if isinstance(value, str) else None

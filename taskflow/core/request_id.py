"""The request id every surface writes to audit entries: one per request, kept forever.

The REST middleware accepts the caller's `X-Request-ID` (or makes one up), echoes it in the
response and leaves it in the ASGI scope under `SCOPE_KEY`; anything served behind that
middleware (the MCP endpoint too) reads it from there, so a request's response header and its
audit entries always name the same id. An id that is not short printable ASCII is replaced
rather than stored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

HEADER = "X-Request-ID"
SCOPE_KEY = "taskflow.request_id"
_VALID = re.compile(r"^[\x21-\x7e]{1,100}$")


def accepted_id(value: str | None) -> str:
    """The caller's id when it is safe to keep, otherwise a fresh one."""
    if value and _VALID.match(value):
        return value
    return uuid.uuid4().hex


def from_scope(scope: Mapping[str, Any] | None) -> str | None:
    """The id the middleware chose for this request, or None outside one."""
    if scope is None:
        return None
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None

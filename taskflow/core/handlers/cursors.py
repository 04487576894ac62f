"""Opaque page cursors: a short JSON list, base64url without padding.

A page of tasks (`list_tasks`) and a page of a task's subtree (`get_task`) hand back where they
ended this way, so a client passes one string and never builds one. `unpack` only restores the
list: each reader checks the values' kinds and ranges itself before any of them reaches SQL.
"""

from __future__ import annotations

import base64
import json
from typing import Any

BIGINT_MAX = 2**63 - 1


def pack(*parts: Any) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unpack(cursor: str) -> list[Any]:
    """The packed list; ValueError (or TypeError) for anything that is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(cursor) from None
    if not isinstance(parts, list):
        raise ValueError(cursor)
    return parts


def is_id(value: Any) -> bool:
    """A row id as a cursor may carry it: a positive bigint, and not a bool or a float."""
    return type(value) is int and 0 < value <= BIGINT_MAX

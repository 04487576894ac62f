"""Reading the parts of a request the core does not validate: the raw body and two headers.

The command's own model validates every argument (path, query and body alike); what is left
here is HTTP's: the body's size and media type, `If-Match` and `Idempotency-Key`. Each reader
returns clean values or raises a `ClientError`, rendered as a problem document.
"""

from __future__ import annotations

import re

from starlette.requests import ClientDisconnect, Request

from taskflow.core.domain import is_number
from taskflow.http.problems import ClientError

MAX_BODY_BYTES = 1024 * 1024
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG = re.compile(r'^(?:W/)?"?([0-9]{1,18})"?$')


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def body_bytes(request: Request) -> bytes:
    """The raw body, refusing anything over MAX_BODY_BYTES and any media type but JSON, even
    with an empty body (a body-less request may simply send no Content-Type)."""
    declared = request.headers.get("content-length")
    if declared is not None and is_number(declared) and int(declared) > MAX_BODY_BYTES:
        raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone (or cut off by the receipt deadline): nobody to answer
        raise ClientError(400, "the client left before sending the whole body") from None
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type")
    # A form or text body, even an empty one, is what a cross-site page can send unasked.
    if (content_type is not None or raw.strip()) and not _is_json(content_type or ""):
        raise ClientError(
            415,
            "send the body as JSON with 'Content-Type: application/json'",
            headers={"Accept": "application/json"},
        )
    return raw


def expected_version(request: Request) -> int | None:
    """The version named by `If-Match` (an ETag this API returned), or None if absent or `*`."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    match = _ETAG.match(value.strip())
    if match is None:
        raise ClientError(
            400, 'If-Match must be one ETag this API returned, e.g. "3" (or * for any version)'
        )
    return int(match.group(1))


def idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key` header, checked for form (1 to 255 printable ASCII characters)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ClientError(
            400, "Idempotency-Key must be 1 to 255 printable ASCII characters (a UUID works)"
        )
    return key

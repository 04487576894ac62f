"""Reading a request: path parameters, query string, JSON body and the conditional headers.

Each reader either returns validated values or raises a `ClientError` / `InputInvalid` that the
endpoint wrapper turns into a problem document, so a handler only ever sees clean input.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
)
from starlette.requests import Request

from taskflow.core.domain import is_number
from taskflow.core.schemas import Handle
from taskflow.http.problems import ClientError, InputInvalid

MAX_BODY_BYTES = 1024 * 1024
BIGINT_MAX = 2**63 - 1

ProjectParam = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9-]+$", min_length=1, max_length=100),
    Field(description="Project slug (or numeric id)", examples=["web"]),
]
IdParam = Annotated[int, Field(ge=1, le=BIGINT_MAX)]

# Every path parameter the API uses, by name, with the type it must have.
PATH_PARAMS: dict[str, Any] = {
    "project": ProjectParam,
    "handle": Handle,
    "task_id": Annotated[IdParam, Field(description="Task id")],
    "key_id": Annotated[IdParam, Field(description="API key id")],
    "entry_id": Annotated[IdParam, Field(description="Audit entry id")],
}

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG = re.compile(r'^(?:W/)?"?([0-9]{1,18})"?$')


def path_model(path: str) -> type[BaseModel]:
    """A model of the path parameters named in a route template such as /api/tasks/{task_id}."""
    names = re.findall(r"{(\w+)", path)
    fields: dict[str, Any] = {name: (PATH_PARAMS[name], ...) for name in names}
    return create_model("PathParams", __config__=ConfigDict(extra="forbid"), **fields)


def path_values(request: Request, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The route's path parameters, each validated against its declared type."""
    try:
        return dict(adapter.validate_python(request.path_params).__dict__)
    except ValidationError as exc:
        raise InputInvalid("path", exc) from None


def query_values(request: Request, fields: dict[str, bool]) -> dict[str, Any]:
    """The query string as a dict; `fields` maps each allowed name to "is it a list".

    Unknown names are refused so a typo (`?stauts=`) is reported instead of silently ignored.
    """
    values: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name not in fields:
            allowed = ", ".join(sorted(fields)) or "none"
            raise ClientError(
                400, f"unknown query parameter {name!r}: this endpoint accepts {allowed}"
            )
        if fields[name]:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def body_bytes(request: Request) -> bytes:
    """The raw body, refusing non-JSON media types and anything over MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared is not None and is_number(declared) and int(declared) > MAX_BODY_BYTES:
        raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw.strip() and not _is_json(request.headers.get("content-type", "")):
        raise ClientError(
            415,
            "send the body as JSON with 'Content-Type: application/json'",
            headers={"Accept": "application/json"},
        )
    return raw


def parse_body(raw: bytes, adapter: TypeAdapter[Any]) -> Any:
    """Validate JSON straight from bytes; an empty body counts as `{}`."""
    try:
        return adapter.validate_json(raw if raw.strip() else b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            reason = exc.errors()[0]["msg"]
            raise ClientError(400, f"the body is not valid JSON ({reason})") from None
        raise InputInvalid("body", exc) from None


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
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ClientError(
            400, "Idempotency-Key must be 1 to 255 printable ASCII characters (a UUID works)"
        )
    return key

"""Errors as `application/problem+json` (RFC 9457): one shape for every refusal the API gives.

A frontend reads `status` and `type` to decide what to do, shows `detail` to the user, and for a
422 highlights each entry of `errors` next to its field. Domain errors from the core keep their
own status and message; a bug becomes a logged 500 that says nothing about the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskflow.core.auth.identity import bearer_challenge
from taskflow.core.declarations import REGISTRY
from taskflow.core.errors import InvalidInput, NextStep, TaskFlowError, Unauthenticated
from taskflow.http.request_id import SCOPE_KEY

log = logging.getLogger("taskflow.http")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:taskflow:problem:"
_MAX_LISTED_ERRORS = 20
# Extension members a core error may carry that are not for the caller's eyes.
_PRIVATE_EXTRAS = frozenset({"cause"})
# Core fields that arrive in a header on this surface.
_HEADER_FIELDS = {"idempotency_key": "header", "expected_version": "body"}
SOURCES_KEY = "taskflow.argument_sources"
"""Request scope key: where each argument of a generated route came from (path, query, body or
header), so a refusal points at the part of the request that holds the field."""

_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    412: ("stale-version", "Precondition failed"),
    413: ("content-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
    422: ("validation-failed", "Invalid input"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class FieldError(BaseModel):
    """One invalid input: where it was, which field, and why."""

    location: str = Field(description="body, query, path or header")
    field: str = Field(description="Dotted path to the field, e.g. subtasks.0.title")
    message: str
    type: str = Field(description="Machine-readable reason, e.g. missing, string_too_short")


class Problem(BaseModel):
    """An RFC 9457 problem document; extra members (e.g. `current_version`) may appear."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Problem type URI, e.g. urn:taskflow:problem:not-found")
    title: str
    status: int
    detail: str = Field(description="What was wrong and what to do about it")
    instance: str | None = Field(default=None, description="The request path")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="For 422: each invalid field and why"
    )


class ClientError(Exception):
    """A request the API refuses before reaching the core (bad JSON, wrong media type, ...)."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    errors: Sequence[FieldError] | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    default_code, default_title = _HTTP_CODES.get(status, ("error", "Request refused"))
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (code or default_code),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request.scope.get(SCOPE_KEY),
    }
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    for key, value in (extra or {}).items():
        if key not in body and key not in _PRIVATE_EXTRAS and value is not None:
            body[key] = value
    return Response(to_json(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def from_domain(request: Request, exc: TaskFlowError) -> Response:
    """A core error keeps its status, code and message."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = challenge(request, exc.message)
    if exc.status == 503:
        headers["Retry-After"] = "5"
    retry_after = exc.extra.get("retry_after")
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    errors = None
    field = exc.extra.get("field")
    if isinstance(exc, InvalidInput):
        errors = _located(request, exc)
    elif exc.status == 422 and isinstance(field, str):
        location = _HEADER_FIELDS.get(field, "body")
        errors = [FieldError(location=location, field=field, message=exc.message, type=exc.code)]
    extra = dict(exc.extra)
    if exc.next_step is not None:
        extra["next_step"] = next_request(exc.next_step)
    return problem_response(
        request,
        exc.status,
        exc.message,
        code=exc.code,
        title=exc.title,
        errors=errors,
        extra=extra,
        headers=headers,
    )


def next_request(step: NextStep) -> dict[str, Any]:
    """The next step as the request to send: the operation, its method and path (arguments
    that are path parameters filled in), and the rest of its arguments."""
    out: dict[str, Any] = {"operation": step.operation, "arguments": dict(step.arguments)}
    declared = REGISTRY.get(step.operation)
    if declared is not None and declared.rest is not None:
        path = declared.rest.path
        for name, value in step.arguments.items():
            path = path.replace("{" + name + "}", str(value))
        out.update(method=declared.rest.method, path=path)
    return out


def _located(request: Request, exc: InvalidInput) -> list[FieldError]:
    sources: Mapping[str, str] = request.scope.get(SOURCES_KEY, {})
    return [
        FieldError(
            location=sources.get(p.field.split(".", 1)[0], "body"),
            field=p.field,
            message=p.message,
            type=p.type,
        )
        for p in exc.problems[:_MAX_LISTED_ERRORS]
    ]


async def from_taskflow_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for refusals raised by generated routes."""
    assert isinstance(exc, TaskFlowError)
    return from_domain(request, exc)


async def from_client_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for requests refused before they reach the core."""
    assert isinstance(exc, ClientError)
    return from_client_error(request, exc)


def challenge(request: Request, message: str) -> str:
    """The WWW-Authenticate value: plain when no token was sent, `invalid_token` otherwise."""
    return bearer_challenge(message if "authorization" in request.headers else None)


def from_client_error(request: Request, exc: ClientError) -> Response:
    return problem_response(request, exc.status, exc.detail, headers=exc.headers)


async def from_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the same problem shape."""
    assert isinstance(exc, HTTPException)
    detail = {
        404: f"no endpoint at {request.url.path}: see /openapi.json for the API's routes",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return problem_response(request, exc.status_code, detail, headers=exc.headers)


def internal_error(request: Request, exc: BaseException) -> Response:
    """A bug: log it with the request id, tell the caller only that it happened."""
    rid = request.scope.get(SCOPE_KEY)
    log.error(
        "unhandled error in %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc
    )
    return problem_response(
        request,
        500,
        f"the server failed to handle this request; it has been logged as request {rid}",
    )

"""The REST application: generated routes, health, /openapi.json, CORS, request ids, problems.

`create_api` builds the Starlette app around a runtime someone else opened (the composition
root in `taskflow.server`, or a test). It holds no globals: two apps on two databases can run
side by side in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan

from taskflow.core.declarations import REGISTRY
from taskflow.core.errors import TaskFlowError
from taskflow.core.runtime import Runtime
from taskflow.http import events, health, operations
from taskflow.http.edge import Edge
from taskflow.http.openapi import openapi_document
from taskflow.http.problems import (
    ClientError,
    from_client_exception,
    from_http_exception,
    from_taskflow_error,
)
from taskflow.http.request_id import CLIENT_HEADER as CLIENT_REQUEST_ID_HEADER
from taskflow.http.request_id import HEADER as REQUEST_ID_HEADER

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "Last-Event-ID",
    REQUEST_ID_HEADER,
]
CORS_RESPONSE_HEADERS = [
    "ETag",
    "Location",
    "WWW-Authenticate",
    "Idempotent-Replayed",
    "Retry-After",
    REQUEST_ID_HEADER,
    CLIENT_REQUEST_ID_HEADER,
]


def _openapi_route(local_mode: bool) -> Route:
    document = openapi_document(
        REGISTRY.values(), (*health.DOCS, *events.DOCS), local_mode=local_mode
    )
    body = to_json(document)

    async def openapi(request: Request) -> Response:
        """The OpenAPI 3.1 document for this API (public, so tools can fetch it)."""
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


def create_api(
    runtime: Runtime,
    *,
    local_handle: str | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Lifespan[Any] | None = None,
) -> Starlette:
    """The REST app. `local_handle` (serve --no-auth): requests without a token act as them.

    `extra_routes` and `lifespan` let the composition root add the MCP endpoint under the same
    middleware and one lifespan.
    """
    routes: list[BaseRoute] = [
        *health.routes(runtime),
        *operations.routes_for(REGISTRY.values(), runtime, local_handle),
        *events.routes(runtime, local_handle),
        _openapi_route(local_handle is not None),
        *extra_routes,
    ]
    middleware = [
        Middleware(
            Edge,
            hosts=runtime.settings.hosts,
            trusted_origins=runtime.settings.trusted_origins,
            allow_origins=runtime.settings.origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            max_age=600,
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            HTTPException: from_http_exception,
            TaskFlowError: from_taskflow_error,
            ClientError: from_client_exception,
        },
        lifespan=lifespan,
    )

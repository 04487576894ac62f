"""Liveness and readiness, for load balancers and `taskflow serve` users.

Plain Starlette routes, not operations: they touch no task data, need no caller and write
nothing, so they are not declared in the core. `DOCS` describes them to the OpenAPI document.
"""

from __future__ import annotations

import asyncio
from functools import cache

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskflow.core.db import current_revision, head_revision
from taskflow.core.errors import Unavailable
from taskflow.core.runtime import Runtime
from taskflow.http.openapi import RouteDoc

READY_TIMEOUT_SECONDS = 5.0
JSON = "application/json"


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    revision: str


DOCS = (
    RouteDoc(
        "GET",
        "/health",
        "health",
        "health",
        "Liveness: the process answers. Touches nothing else.",
        response=Health,
        public=True,
    ),
    RouteDoc(
        "GET",
        "/health/ready",
        "health",
        "ready",
        "Readiness: the database answers and its schema is migrated to this version's head.",
        description="503 (problem+json) otherwise, so a load balancer keeps traffic away until "
        "it is.",
        response=Readiness,
        public=True,
    ),
)


@cache
def _head() -> str:
    return head_revision()


def routes(runtime: Runtime) -> list[Route]:
    """`/health` and `/health/ready` for this runtime's database."""

    async def health(request: Request) -> Response:
        return Response(Health(status="ok").model_dump_json(), media_type=JSON)

    async def ready(request: Request) -> Response:
        revision = await _revision_or_recover(runtime)
        if revision != _head():
            raise Unavailable(
                f"the database schema is at {revision or 'nothing'}, this server needs "
                f"{_head()}: run the migrations (restart the server, which migrates on startup)"
            )
        answer = Readiness(status="ready", database="ok", revision=revision)
        return Response(answer.model_dump_json(), media_type=JSON)

    return [
        Route("/health", health, methods=["GET"], name="health"),
        Route("/health/ready", ready, methods=["GET"], name="ready"),
    ]


async def _revision_or_recover(runtime: Runtime) -> str | None:
    """The schema revision; an embedded database that was gone is restarted and asked again.

    Asked again also when this probe did not restart it: another call (a request, the
    housekeeper) may have restarted it a moment earlier, leaving this probe a dead pooled
    connection, which the failure invalidated; a new one reaches the restarted server."""
    try:
        return await _revision(runtime)
    except Exception:
        await runtime.db.recover()
        try:
            return await _revision(runtime)
        except Exception as again:
            raise Unavailable(_unreachable(runtime, again)) from again


async def _revision(runtime: Runtime) -> str | None:
    return await asyncio.wait_for(current_revision(runtime.db), READY_TIMEOUT_SECONDS)


def _unreachable(runtime: Runtime, exc: BaseException) -> str:
    """Where to look: DATABASE_URL only when one is set, else the embedded server's own log."""
    settings = runtime.settings
    if settings.database_url:
        return (
            f"the database is unreachable ({type(exc).__name__}): check DATABASE_URL and that "
            "PostgreSQL is running"
        )
    return (
        f"the embedded PostgreSQL is unreachable ({type(exc).__name__}); its log is "
        f"{settings.data_dir / 'pgdata' / 'log'}"
    )

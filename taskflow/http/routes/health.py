"""Liveness and readiness, for load balancers and `taskflow serve` users."""

from __future__ import annotations

import asyncio
from functools import cache

from pydantic import BaseModel

from taskflow.core.db import current_revision, head_revision
from taskflow.core.errors import Unavailable
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("health")
READY_TIMEOUT_SECONDS = 5.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    revision: str


@cache
def _head() -> str:
    return head_revision()


@endpoints.get("/health", response=Health, public=True)
async def health(call: Call) -> Health:
    """Liveness: the process answers. Touches nothing else."""
    return Health(status="ok")


@endpoints.get("/health/ready", response=Readiness, public=True)
async def ready(call: Call) -> Readiness:
    """Readiness: the database answers and its schema is migrated to this version's head.

    503 (problem+json) otherwise, so a load balancer keeps traffic away until it is.
    """
    try:
        revision = await asyncio.wait_for(current_revision(call.db), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        raise Unavailable(
            f"the database is unreachable ({type(exc).__name__}): check DATABASE_URL and that "
            "PostgreSQL is running"
        ) from exc
    if revision != _head():
        raise Unavailable(
            f"the database schema is at {revision or 'nothing'}, this server needs {_head()}: "
            "run the migrations (restart the server, which migrates on startup)"
        )
    return Readiness(status="ready", database="ok", revision=revision)

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


async def _revision(call: Call) -> str | None:
    return await asyncio.wait_for(current_revision(call.db), READY_TIMEOUT_SECONDS)


def _unreachable(call: Call, exc: BaseException) -> str:
    """Where to look: DATABASE_URL only when one is set, else the embedded server's own log."""
    settings = call.runtime.settings
    if settings.database_url:
        return (
            f"the database is unreachable ({type(exc).__name__}): check DATABASE_URL and that "
            "PostgreSQL is running"
        )
    return (
        f"the embedded PostgreSQL is unreachable ({type(exc).__name__}); its log is "
        f"{settings.data_dir / 'pgdata' / 'log'}"
    )


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
        revision = await _revision(call)
    except Exception as exc:
        if not await call.db.recover():
            raise Unavailable(_unreachable(call, exc)) from exc
        try:  # the embedded database was gone and is back: answer for the restarted one
            revision = await _revision(call)
        except Exception as again:
            raise Unavailable(_unreachable(call, again)) from again
    if revision != _head():
        raise Unavailable(
            f"the database schema is at {revision or 'nothing'}, this server needs {_head()}: "
            "run the migrations (restart the server, which migrates on startup)"
        )
    return Readiness(status="ready", database="ok", revision=revision)

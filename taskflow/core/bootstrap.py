"""The one way a process builds its runtime: settings -> database URL -> Database ->
Authenticator -> Runtime.

The CLI, the stdio MCP server and the HTTP server all start here, so they agree on which
database they use (`DATABASE_URL`, else the embedded PostgreSQL under the data directory), on
when the schema is migrated and on how bearer tokens are verified. Two flavours:
- `build_runtime` does nothing that needs an event loop (uvicorn calls its app factory
  synchronously): the server connects and migrates later, in its lifespan (`prepare`);
- `open_runtime` does it all now and refuses a database it cannot open as `Unavailable`, in one
  line, before any command or tool runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from taskflow.core import embedded
from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import (
    Database,
    check_pooling,
    connect,
    current_revision,
    database_url,
    upgrade,
)
from taskflow.core.errors import TaskFlowError, Unavailable
from taskflow.core.runtime import Runtime

Notice = Callable[[embedded.Started], None]
"""Told how the embedded server was found (restarted after a crash, started fresh)."""


def authenticator(settings: Settings, db: Database) -> Authenticator:
    """Agent API keys always; Better Auth JWTs when an auth server (its JWKS) is configured."""
    verifier = None
    if settings.jwks_url:  # imported here: local mode never loads the JWT stack
        from taskflow.core.auth.jwt import JwtVerifier

        verifier = JwtVerifier.from_settings(settings)
    return Authenticator(db, verifier)


def runtime_for(settings: Settings, db: Database, *, limited: bool = False) -> Runtime:
    """The runtime over a database the caller already has (tests, benchmarks). `limited`: rate
    limits per worker, as the settings say (servers and stdio MCP; the CLI is one local user)."""
    limiter = None
    if limited:  # imported here: the CLI has no limits
        from taskflow.core.limits import RateLimiter

        limiter = RateLimiter.from_settings(settings, db)
    return Runtime(settings=settings, db=db, auth=authenticator(settings, db), limiter=limiter)


def build_runtime(settings: Settings, *, pool_size: int = 10) -> Runtime:
    """A server's runtime (rate limited), built without awaiting anything; `prepare` it inside
    the event loop.

    The embedded server is started here when no DATABASE_URL is set (and restarted by the
    process whenever it finds it gone).
    """
    return runtime_for(settings, connect(settings, pool_size=pool_size), limited=True)


async def prepare(runtime: Runtime, *, migrate: bool = True) -> None:
    """Refuse an undeclared pooler, then bring the schema up to date (or just connect, so a dead
    server fails here and not in the middle of the first operation)."""
    await check_pooling(runtime.db, runtime.settings)
    if migrate:
        await upgrade(runtime.db)
    else:
        await current_revision(runtime.db)


async def open_runtime(
    settings: Settings,
    *,
    db: Database | None = None,
    migrate: bool = True,
    pool_size: int = 10,
    keep_running: bool = False,
    notice: Notice | None = None,
    limited: bool = False,
) -> Runtime:
    """Connect (starting the embedded server if needed), migrate, and set up token checks.

    With `db` given, that database is used as it is. A database that cannot be opened is
    `Unavailable` ("cannot open the embedded database: ..."), closed again before raising. An
    embedded database that fails after the cheap join of a running server (its database dropped
    by hand, say) is opened once more the full way, which makes the database again.
    """
    if db is not None:
        return runtime_for(settings, db, limited=limited)
    opening = _open(settings, migrate, pool_size, keep_running, notice, limited)
    try:
        return await opening
    except TaskFlowError:
        if settings.database_url or not embedded.forget_database(settings.data_dir):
            raise
    return await _open(settings, migrate, pool_size, keep_running, notice, limited)


async def _open(
    settings: Settings,
    migrate: bool,
    pool_size: int,
    keep_running: bool,
    notice: Notice | None,
    limited: bool,
) -> Runtime:
    runtime: Runtime | None = None
    try:
        url = await asyncio.to_thread(
            database_url, settings, keep_running=keep_running, notice=notice
        )
        runtime = runtime_for(
            settings, connect(settings, url, pool_size=pool_size), limited=limited
        )
        await prepare(runtime, migrate=migrate)
    except Exception as exc:
        if runtime is not None:
            await runtime.close()
        if isinstance(exc, TaskFlowError):
            raise
        where = "the embedded database" if not settings.database_url else "the database"
        raise Unavailable(f"cannot open {where}: {exc}".strip()) from exc
    return runtime

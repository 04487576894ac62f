"""Hot statements on the asyncpg connection under the engine: static SQL, positional parameters.

SQLAlchemy costs about 0.3 ms of Python per statement (session, cache key, compile, result
processing, greenlet switches) on top of the round trip; the hottest calls (authenticating an
API key, creating a task with its audit entry) run one fixed statement each, which asyncpg
prepares once per connection and then only binds. The connection still comes from the engine's
pool (same size limit, the idle-connection ping, replaced on `Database.recover`), so nothing else
holds connections of its own.

A statement run here alone is its own transaction: PostgreSQL runs one statement atomically,
data-modifying CTEs included, so a statement that writes a row and its audit entry needs no
BEGIN/COMMIT round trips. Behind a transaction-mode pooler (`Database.pooled`) asyncpg has no
statement cache and prepares each statement in a round trip of its own, which the pooler may
send to another server connection; there the statement runs inside BEGIN..COMMIT, which pins it.

Driver errors are answered as `db.translate_errors` answers SQLAlchemy's: an outage or a lost
connection is `Unavailable` (and the connection is dropped from the pool), a refused value
`ValidationFailed` or `Conflict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import greenlet_spawn

from taskflow.core.db import (
    _OUTAGE_STATES,
    _POOLER_STATES,
    UNDECLARED_POOLER,
    Database,
    refusal_for_state,
    translate_errors,
)
from taskflow.core.errors import Unavailable


async def fetchrow(db: Database, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """Run one statement as its own transaction and return its first row (or None).

    Not guarded: run it inside `db.guarded()` (the dispatcher's unit of work is), so an outage
    heals the embedded database once per call. Plain awaits rather than context managers: this
    runs twice per request on the hottest paths.
    """
    fairy = await _checkout(db)
    conn = fairy.driver_connection
    try:
        if db.pooled:
            async with conn.transaction():
                row = await conn.fetchrow(sql, *args)
        else:
            row = await conn.fetchrow(sql, *args)
    except BaseException as exc:
        await _give_back(fairy, exc)
        translated = _translated(exc)
        if translated is exc:
            raise
        raise translated from exc
    await _give_back(fairy, None)
    return row  # type: ignore[no-any-return]


async def _checkout(db: Database) -> Any:
    """A pooled connection (SQLAlchemy's proxy; `.driver_connection` is asyncpg's)."""
    try:
        return await db.engine.raw_connection()
    except Exception as exc:  # pool timeout, connect failures: as for a session
        async with translate_errors():
            raise exc from None


async def _give_back(fairy: Any, failure: BaseException | None) -> None:
    """Back to the pool, or dropped from it when the failure leaves the link in doubt.

    In a greenlet: checking in may close the connection, which SQLAlchemy's adapter awaits."""
    if failure is not None and not _link_is_fine(failure):
        await greenlet_spawn(fairy.invalidate, failure)
    else:
        await greenlet_spawn(fairy.close)


def _link_is_fine(exc: BaseException) -> bool:
    """The server refused the statement (and is not going away), or asyncpg could not encode a
    parameter before sending it: the connection is as good as before."""
    if isinstance(exc, asyncpg.PostgresError):
        return not _state(exc).startswith(_OUTAGE_STATES)
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


def _state(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def _translated(exc: BaseException) -> BaseException:
    """The error a caller sees: a domain error for the database's refusals and outages, the
    original for anything else (a cancellation, a bug)."""
    if not isinstance(exc, asyncpg.PostgresError):
        if isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError) and not isinstance(
            exc, ValueError
        ):
            return Unavailable("the database connection was lost; retry", cause=str(exc))
        return exc
    state = _state(exc)
    if state.startswith(_OUTAGE_STATES):
        return Unavailable("the database is unavailable; retry in a few seconds")
    if state in _POOLER_STATES:
        return Unavailable(UNDECLARED_POOLER)
    detail = (str(exc) or type(exc).__name__).splitlines()[0]
    refusal = refusal_for_state(state, detail)
    return refusal if refusal is not None else exc


async def fetchrow_in(conn: AsyncConnection, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """The same statement inside a SQLAlchemy transaction already begun (the session's
    connection), so it commits or rolls back with the rest of the unit of work."""
    result = await conn.exec_driver_sql(sql, args)
    return result.mappings().first()

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

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def connection(db: Database) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection outside any transaction, given back at exit (or dropped from
    the pool if it broke). Errors come out translated; healing is the caller's (`db.guarded`)."""
    async with translate_errors():  # checkout: pool timeout, connect failures
        fairy = await db.engine.raw_connection()
    broken: BaseException | None = None
    try:
        yield fairy.driver_connection
    except asyncpg.PostgresError as exc:  # the server refused the statement (or is going away)
        if _state(exc).startswith(_OUTAGE_STATES):
            broken = exc
        raise _translated(exc) from exc
    except BaseException as exc:
        if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
            raise  # a parameter asyncpg could not encode (its client-side DataError): a bug
        broken = exc  # a lost link, a timeout, a cancellation: the link's state is unknown
        if isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError):
            raise Unavailable("the database connection was lost; retry", cause=str(exc)) from exc
        raise
    finally:
        if broken is None:
            await greenlet_spawn(fairy.close)
        else:
            await greenlet_spawn(fairy.invalidate, broken)


def _state(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def _translated(exc: asyncpg.PostgresError) -> Exception:
    state = _state(exc)
    if state.startswith(_OUTAGE_STATES):
        return Unavailable("the database is unavailable; retry in a few seconds")
    if state in _POOLER_STATES:
        return Unavailable(UNDECLARED_POOLER)
    detail = (str(exc) or type(exc).__name__).splitlines()[0]
    refusal = refusal_for_state(state, detail)
    return refusal if refusal is not None else exc


async def fetchrow(db: Database, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """Run one statement as its own transaction and return its first row (or None).

    Not guarded: run it inside `db.guarded()` (the dispatcher's unit of work is), so an outage
    heals the embedded database once per call."""
    async with connection(db) as conn:
        if not db.pooled:
            return await conn.fetchrow(sql, *args)  # type: ignore[no-any-return]
        async with conn.transaction():
            return await conn.fetchrow(sql, *args)  # type: ignore[no-any-return]


async def fetchrow_in(conn: AsyncConnection, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """The same statement inside a SQLAlchemy transaction already begun (the session's
    connection), so it commits or rolls back with the rest of the unit of work."""
    result = await conn.exec_driver_sql(sql, args)
    return result.mappings().first()

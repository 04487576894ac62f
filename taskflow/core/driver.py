"""Hot statements straight on asyncpg: static SQL, positional parameters, held connections.

SQLAlchemy costs about 0.3 ms of Python per statement (session, cache key, compile, result
processing, greenlet switches) on top of the round trip; the hottest calls (authenticating an
API key, creating a task with its audit entry) run one fixed statement each, which asyncpg
prepares once per connection and then only binds.

Even a bare checkout from the engine's pool and its check-in (greenlet switches, events, the
reset) cost about as much CPU as the statement, so these statements run on a `Lane`: up to
`pool_size` asyncpg connections opened through the engine (same URL, connect arguments and
timeouts) and then detached from its pool, held LIFO between statements. A connection idle for
`db.IDLE_PING_SECONDS` is pinged before use, as pooled ones are; one that breaks is dropped
together with every idle one (the server probably went away), and `Database.recover` and
`Database.close` (both dispose the engine) close them all. When every lane connection is busy a
statement waits for one, as long as a pooled checkout would (`db.POOL_TIMEOUT_SECONDS`), then
answers 503.

A statement run here alone is its own transaction: PostgreSQL runs one statement atomically,
data-modifying CTEs included, so a statement that writes a row and its audit entry needs no
BEGIN/COMMIT round trips. Behind a transaction-mode pooler (`Database.pooled`) asyncpg has no
statement cache and prepares each statement in a round trip of its own, which the pooler may
send to another server connection; there the statement runs inside BEGIN..COMMIT, which pins it.

Driver errors are answered as `db.translate_errors` answers SQLAlchemy's: an outage or a lost
connection is `Unavailable`, a refused value `ValidationFailed` or `Conflict`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only

from taskflow.core.db import (
    _OUTAGE_STATES,
    _POOLER_STATES,
    IDLE_PING_SECONDS,
    POOL_TIMEOUT_SECONDS,
    UNDECLARED_POOLER,
    Database,
    refusal_for_state,
    translate_errors,
)
from taskflow.core.errors import Unavailable


async def fetchrow(db: Database, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """Run one statement as its own transaction and return its first row (or None).

    Not guarded: run it inside `db.guarded()` (the dispatcher's unit of work is), so an outage
    heals the embedded database once per call.
    """
    return await lane_of(db).fetchrow(db, sql, args)


async def fetchrow_in(conn: AsyncConnection, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """The same statement inside a SQLAlchemy transaction already begun (the session's
    connection), so it commits or rolls back with the rest of the unit of work."""
    result = await conn.exec_driver_sql(sql, args)
    return result.mappings().first()


_LANES: weakref.WeakKeyDictionary[Engine, Lane] = weakref.WeakKeyDictionary()


SMALL_POOL = 4
"""An engine pool this small belongs to a process that runs one call at a time (a CLI command or
session opens 2 x 2): a lane would only add connections to the ones it already holds, so its
statements borrow from the pool."""


def lane_of(db: Database, *, size: int | None = None) -> Lane:
    """The database's lane, made on first use: half the engine pool's size, or none (every
    statement borrows from the pool) for a small pool; `size` sets it (tests)."""
    engine = db.engine.sync_engine
    lane = _LANES.get(engine)
    if lane is None:
        if size is None:
            pool_size = engine.pool.size()  # type: ignore[attr-defined]
            size = pool_size // 2 if pool_size > SMALL_POOL else 0
        lane = _LANES[engine] = Lane(size)
        event.listen(engine, "engine_disposed", lane.close_all)
    return lane


class Lane:
    """Up to `size` asyncpg connections held for single statements (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.opened = 0
        self._idle: list[tuple[asyncpg.Connection, int, float]] = []  # (conn, epoch, since)
        self._epoch = 0  # bumped when every connection is to be dropped
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def fetchrow(
        self, db: Database, sql: str, args: tuple[Any, ...]
    ) -> Mapping[str, Any] | None:
        if self.size == 0:  # no lane (a small pool): the statement on a pooled connection
            return await _borrowed(db, sql, args)
        conn = await self._take(db)
        while conn is None:  # every lane connection busy: wait, as for a pooled one
            await self._wait()
            conn = await self._take(db)
        epoch = self._epoch
        try:
            row = await _run(conn, db.pooled, sql, args)
        except BaseException as exc:
            if _link_is_fine(exc):
                self._give_back(conn, epoch)
            else:
                self._drop(conn)  # its state is unknown (a cancellation: mid-statement)
                if isinstance(exc, (asyncpg.PostgresError, *_LINK_ERRORS)):
                    self._epoch += 1  # the server probably went away: the idle ones too
            translated = _translated(exc)
            if translated is exc:
                raise
            raise translated from exc
        self._give_back(conn, epoch)
        return row

    async def _take(self, db: Database) -> asyncpg.Connection | None:
        """An idle connection (pinged if it sat idle long), a new one, or None when full."""
        while self._idle:
            conn, epoch, since = self._idle.pop()
            if epoch != self._epoch or conn.is_closed():
                self._drop(conn)
                continue
            if time.monotonic() - since >= IDLE_PING_SECONDS and not await _alive(conn):
                self._drop(conn)
                continue
            return conn
        if self.opened >= self.size:
            return None
        self.opened += 1
        try:
            fairy = await _checkout(db)
            conn: asyncpg.Connection = fairy.driver_connection
            fairy.detach()  # ours now; the pool may open another in its place
        except BaseException:
            self.opened -= 1
            raise
        return conn

    async def _wait(self) -> None:
        """Until a connection is given back or dropped (making room), or `Unavailable` after
        the engine pool's own timeout: the wait a pooled checkout would have."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, POOL_TIMEOUT_SECONDS)
        except TimeoutError:
            self._pass_on(waiter)
            raise Unavailable(
                "the server is too busy: no database connection became free; retry in a few seconds"
            ) from None
        except BaseException:
            self._pass_on(waiter)
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _pass_on(self, waiter: asyncio.Future[None]) -> None:
        """A waiter leaving after it was woken hands the wake-up on, so none is lost."""
        if waiter.done() and not waiter.cancelled():
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _give_back(self, conn: asyncpg.Connection, epoch: int) -> None:
        if epoch != self._epoch or conn.is_closed():
            self._drop(conn)
            return
        self._idle.append((conn, epoch, time.monotonic()))
        self._wake()

    def _drop(self, conn: asyncpg.Connection) -> None:
        self.opened -= 1
        conn.terminate()
        self._wake()  # room for a new connection

    def close_all(self, _engine: Engine | None = None) -> None:
        """The engine was disposed (recovery, shutdown): close the idle connections, and the
        busy ones when they come back. Called in the greenlet of `AsyncEngine.dispose`, where
        a connection can be closed politely; elsewhere it is terminated."""
        self._epoch += 1
        idle, self._idle = self._idle, []
        for conn, _, _ in idle:
            self.opened -= 1
            closing = conn.close(timeout=2)
            try:
                await_only(closing)
            except Exception:
                closing.close()
                conn.terminate()
            self._wake()  # room for a new connection


async def _run(
    conn: asyncpg.Connection, pooled: bool, sql: str, args: tuple[Any, ...]
) -> Mapping[str, Any] | None:
    if not pooled:
        return await conn.fetchrow(sql, *args)  # type: ignore[no-any-return]
    async with conn.transaction():
        return await conn.fetchrow(sql, *args)  # type: ignore[no-any-return]


async def _borrowed(db: Database, sql: str, args: tuple[Any, ...]) -> Mapping[str, Any] | None:
    """One statement on the driver connection of a connection borrowed from the engine's pool
    (given back at once), answered and translated as on the lane."""
    async with translate_errors(), db.engine.connect() as pooled:
        raw = await pooled.get_raw_connection()
        try:
            return await _run(raw.driver_connection, db.pooled, sql, args)
        except BaseException as exc:
            translated = _translated(exc)
            if translated is exc:
                raise
            raise translated from exc


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.execute(";")
    except Exception:
        return False
    return True


async def _checkout(db: Database) -> Any:
    """A pooled connection (SQLAlchemy's proxy; `.driver_connection` is asyncpg's)."""
    try:
        return await db.engine.raw_connection()
    except Exception as exc:
        # A failed connect comes out as the dialect's DBAPI error (no SQLAlchemy wrapper on this
        # path), caused by asyncpg's: judged by that ("the database system is starting up" is
        # an outage). Pool timeouts and the rest: as for a session.
        cause = exc.__cause__
        if isinstance(cause, (asyncpg.PostgresError, *_LINK_ERRORS)):
            translated = _translated(cause)
            if translated is not cause:
                raise translated from exc
        async with translate_errors():
            raise exc from None


def _link_is_fine(exc: BaseException) -> bool:
    """The server refused the statement (and is not going away), or asyncpg could not encode a
    parameter before sending it: the connection is as good as before."""
    if isinstance(exc, asyncpg.PostgresError):
        return not _state(exc).startswith(_OUTAGE_STATES)
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


# What asyncpg raises when the link itself failed: closed or reset under it, a protocol state
# left behind by a server that went away mid-conversation, a command timeout.
_LINK_ERRORS = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)


def _state(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def _translated(exc: BaseException) -> BaseException:
    """The error a caller sees: a domain error for the database's refusals and outages, the
    original for anything else (a cancellation, a bug)."""
    if not isinstance(exc, asyncpg.PostgresError):
        if isinstance(exc, _LINK_ERRORS) and not isinstance(exc, ValueError):
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

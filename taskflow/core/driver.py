"""Hot statements straight on asyncpg: static SQL, positional parameters, held connections.

SQLAlchemy costs about 0.3 ms of Python per statement (session, cache key, compile, result
processing, greenlet switches) on top of the round trip; the hottest calls (authenticating an
API key, creating a task with its audit entry) run one fixed statement each, which asyncpg
prepares once per connection and then only binds.

Even a bare checkout from the engine's pool and its check-in (greenlet switches, events, the
reset) cost about as much CPU as the statement, so these statements run on a `Lane`: up to
`pool_size` asyncpg connections opened straight from the database's URL (the engine's connect
arguments and timeouts), held LIFO between statements. The engine is not needed for them, so a
process that only reads this way (`taskflow list`) never imports SQLAlchemy. A connection idle
for `db.IDLE_PING_SECONDS` is pinged before use, as pooled ones are; one that breaks is dropped
together with every idle one (the server probably went away), and `Database.recover`,
`Database.close` and disposing the engine close them all. When every lane connection is busy a
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
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from taskflow.core import dsn
from taskflow.core.db import (
    _OUTAGE_STATES,
    _POOLER_STATES,
    CONNECT_TIMEOUT_SECONDS,
    IDLE_PING_SECONDS,
    POOL_TIMEOUT_SECONDS,
    STATEMENT_TIMEOUT_SECONDS,
    UNDECLARED_POOLER,
    Database,
    refusal_for_state,
)
from taskflow.core.errors import Unavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


async def fetchrow(db: Database, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """Run one statement as its own transaction and return its first row (or None).

    Not guarded: run it inside `db.guarded()` (the dispatcher's unit of work is), so an outage
    heals the embedded database once per call.
    """
    return await lane_of(db).run(db, "fetchrow", sql, args)  # type: ignore[no-any-return]


async def fetch(db: Database, sql: str, *args: Any) -> list[Mapping[str, Any]]:
    """`fetchrow`, every row."""
    return await lane_of(db).run(db, "fetch", sql, args)  # type: ignore[no-any-return]


async def fetchrow_in(conn: AsyncConnection, sql: str, *args: Any) -> Mapping[str, Any] | None:
    """The same statement inside a SQLAlchemy transaction already begun (the session's
    connection), so it commits or rolls back with the rest of the unit of work."""
    result = await conn.exec_driver_sql(sql, args)
    return result.mappings().first()


async def fetch_in(conn: AsyncConnection, sql: str, *args: Any) -> list[Mapping[str, Any]]:
    """`fetchrow_in`, every row."""
    result = await conn.exec_driver_sql(sql, args)
    return list(result.mappings().all())


SMALL_POOL = 4
"""An engine pool this small belongs to a process that runs one call at a time (a CLI command or
session opens 2 x 2): its lane holds one connection."""


def lane_of(db: Database, *, size: int | None = None) -> Lane:
    """The database's lane, made on first use: as many connections as the engine pool's
    `pool_size`, or one for a small pool; `size` sets it (tests)."""
    lane = db.lane
    if lane is None:
        if size is None:
            size = db.pool_size if 2 * db.pool_size > SMALL_POOL else 1
        lane = db.lane = Lane(size)
        if db._engine is not None:
            lane.follow(db._engine)
    return lane


class Lane:
    """Up to `size` asyncpg connections held for single statements (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.opened = 0
        self._idle: list[tuple[asyncpg.Connection, int, float]] = []  # (conn, epoch, since)
        self._epoch = 0  # bumped when every connection is to be dropped
        self._waiters: deque[asyncio.Future[None]] = deque()

    def follow(self, engine: AsyncEngine) -> None:
        """Close this lane's connections whenever the engine is disposed (recovery, shutdown,
        a test that resets every connection)."""
        from sqlalchemy import event

        event.listen(engine.sync_engine, "engine_disposed", self.close_all)

    async def run(self, db: Database, verb: str, sql: str, args: tuple[Any, ...]) -> Any:
        """`verb` (`fetchrow` or `fetch`) of `sql` on one of the lane's connections."""
        conn = await self._take(db)
        while conn is None:  # every lane connection busy: wait, as for a pooled one
            await self._wait()
            conn = await self._take(db)
        epoch = self._epoch
        try:
            row = await _run(conn, db.pooled, verb, sql, args)
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

    def adopt(self, conn: asyncpg.Connection) -> bool:
        """Keep a connection opened from the same URL (`open_connection`: the pooler check's)
        as an idle one when there is room, saving the next statement a connect; False when the
        lane is full, and the caller closes it."""
        if self.opened >= self.size:
            return False
        self.opened += 1
        self._idle.append((conn, self._epoch, time.monotonic()))
        return True

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
            return await _connect(db)
        except BaseException:
            self.opened -= 1
            raise

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
        from sqlalchemy.util import await_only

        for conn in self._release_idle():
            closing = conn.close(timeout=2)
            try:
                await_only(closing)
            except Exception:
                closing.close()
                conn.terminate()

    async def aclose(self) -> None:
        """`close_all` outside SQLAlchemy (a process that never built the engine)."""
        for conn in self._release_idle():
            try:
                await conn.close(timeout=2)
            except Exception:
                conn.terminate()

    def _release_idle(self) -> list[asyncpg.Connection]:
        """The idle connections, no longer counted; the busy ones are dropped on return."""
        self._epoch += 1
        idle, self._idle = self._idle, []
        self.opened -= len(idle)
        for _ in idle:
            self._wake()  # room for a new connection
        return [conn for conn, _, _ in idle]


async def _run(
    conn: asyncpg.Connection, pooled: bool, verb: str, sql: str, args: tuple[Any, ...]
) -> Any:
    if not pooled:
        return await getattr(conn, verb)(sql, *args)
    async with conn.transaction():
        return await getattr(conn, verb)(sql, *args)


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.execute(";")
    except Exception:
        return False
    return True


async def open_connection(db: Database) -> asyncpg.Connection:
    """A new asyncpg connection from the database's URL, with the engine's timeouts (and,
    behind a transaction-mode pooler, no statement cache); asyncpg's errors as they are."""
    cache = {"statement_cache_size": 0} if db.pooled else {}
    return await asyncpg.connect(
        dsn.asyncpg_dsn(db.url),
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=STATEMENT_TIMEOUT_SECONDS,
        **cache,
    )


async def _connect(db: Database) -> asyncpg.Connection:
    """`open_connection` for the lane: a server that cannot be reached is unavailable (as the
    engine's connect says it), a refusal by the server is answered as a statement's is."""
    try:
        return await open_connection(db)
    except Exception as exc:
        if isinstance(exc, _LINK_ERRORS) and not isinstance(exc, ValueError):
            raise Unavailable(
                "the database is unavailable; retry in a few seconds", cause=str(exc)
            ) from exc
        translated = _translated(exc)
        if translated is exc:
            raise
        raise translated from exc


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

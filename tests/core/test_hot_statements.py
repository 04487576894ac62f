"""The hot statements: one-statement task creates, their audit bytes, the unit of work that lets
a one-write call run alone, and the driver lane's held connections (what happens when one
breaks, when the engine is disposed, when the server refuses a value)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import UTC, datetime

import asyncpg
import pytest

from taskflow.core import audit, driver
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Via
from taskflow.core.errors import Unavailable, ValidationFailed
from taskflow.core.handlers import task_insert
from taskflow.core.schemas import CreateTask, SubtaskSpec
from taskflow.core.services import tasks
from taskflow.core.uow import UnitOfWork
from tests.conftest import _admin_dsn
from tests.core.conftest import scalar, tail


@pytest.mark.parametrize("request_id", [None, "req-é-1"])
def test_an_inserted_entry_hashes_the_bytes_payload_defines(request_id: str | None) -> None:
    """The statement puts the ids and the actor's columns between `before`, `middle` and
    `after`; together they must be `audit.payload` byte for byte."""
    when = datetime(2026, 12, 1, 10, 30, 0, 123456, tzinfo=UTC)
    details = {"new": {"title": "Ünïcode ✓", "tags": ["a"]}, "parent_id": None}
    entry = audit.inserted_entry(
        entity_type="task",
        action="created",
        via="http",
        request_id=request_id,
        details=details,
        created_at=when,
    )
    ids = b"41\x1f7\x1f41"
    actor = "3\x1f@bøt\x1fagent".encode()
    expected = audit.payload(
        entity_type="task",
        entity_id=41,
        project_id=7,
        task_id=41,
        action="created",
        actor_id=3,
        actor_handle="@bøt",
        actor_type="agent",
        details=audit.canonical_details(details),
        request_id=request_id,
        via="http",
        created_at=when,
    )
    assert entry.before + ids + entry.middle + actor + entry.after == expected


async def test_a_created_entry_chains_as_record_would(db: Database, owner: Actor) -> None:
    log = await tail(db)
    detail = await tasks.create_task(db, owner, CreateTask(title="Chained", project="web"))
    (entry,) = await log.new()
    assert entry["entity_id"] == entry["task_id"] == detail.task.id
    assert entry["seq"] == 1 and entry["prev_hash"] == audit.GENESIS
    assert entry["hash"] == hashlib.sha256(audit.GENESIS + audit.payload_of(entry)).digest()
    assert (await audit.verify(db)).ok


async def test_write_alone_in_a_begun_unit_rolls_back_with_it(db: Database, owner: Actor) -> None:
    """Once the unit's transaction has begun, `write_alone` runs inside it: rolled back with it."""
    before = await scalar(db, "SELECT count(*) FROM tasks")
    uow = UnitOfWork.lazy(db)
    await uow.session.connection()  # the transaction begins
    assert uow.begun
    args = task_insert.arguments(
        owner.worker_id,
        SubtaskSpec(title="Never kept"),
        via=str(Via.CORE),
        request_id=None,
        slug="web",
        project_id=None,
        parent_id=None,
        recurrence=None,
        assignee_id=None,
    )
    row = await uow.write_alone(task_insert.INSERT_TASK, *args)
    assert row is not None and row["title"] == "Never kept"
    await uow.close()  # no commit
    assert await scalar(db, "SELECT count(*) FROM tasks") == before
    kept = "SELECT count(*) FROM audit_log WHERE entity_type = 'task' AND entity_id = :i"
    assert await scalar(db, kept, i=row["id"]) == 0


def _lane_backends(db: Database) -> list[int]:
    """The server pids of the lane's idle connections."""
    return [conn.get_server_pid() for conn, _, _ in driver.lane_of(db)._idle]


async def test_a_lane_connection_killed_server_side_costs_at_most_one_503(
    db: Database, pg_server_url: str, owner: Actor
) -> None:
    if db.pooled:
        pytest.skip("through a pooler, a client connection outlives the server processes")
    await asyncio.gather(*(driver.fetchrow(db, "SELECT pg_sleep(0.05)") for _ in range(2)))
    pids = _lane_backends(db)
    assert len(pids) == 2, "the lane holds its connections between statements"
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        for pid in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    # A connection seen closed is replaced at once; one that is not costs this call...
    with contextlib.suppress(Unavailable):
        await driver.fetchrow(db, "SELECT 1 AS one")
    # ... and only this call: the other idle one (just as dead) was dropped with it.
    assert dict(await driver.fetchrow(db, "SELECT 2 AS two") or {}) == {"two": 2}
    assert not set(_lane_backends(db)) & set(pids)
    created = await tasks.create_task(db, owner, CreateTask(title="After", project="web"))
    assert created.task.title == "After"


async def test_a_refused_value_is_invalid_input_and_keeps_the_connection(db: Database) -> None:
    await driver.fetchrow(db, "SELECT 1 AS one")
    lane = driver.lane_of(db)
    ((held, _, _),) = lane._idle
    with pytest.raises(ValidationFailed):
        await driver.fetchrow(db, "SELECT 1 / $1::int AS x", 0)
    assert [conn for conn, _, _ in lane._idle] == [held] and lane.opened == 1


async def test_a_small_pool_reads_on_one_connection_without_the_engine(db_url: str) -> None:
    """A CLI command's pool (2 x 2): its statements share one lane connection, opened from the
    URL; a command that only reads this way never builds SQLAlchemy's engine."""
    database = Database.from_url(db_url, pool_size=2)
    try:
        for n in (1, 2):
            assert (await driver.fetchrow(database, "SELECT 41 + $1::int AS n", n))["n"] == 41 + n
        lane = driver.lane_of(database)
        assert lane.size == 1 and lane.opened == 1 and len(lane._idle) == 1
        assert database._engine is None, "a plain read built the engine"
    finally:
        await database.close()
    assert lane.opened == 0 and not lane._idle


async def test_closing_a_database_that_never_built_its_engine_closes_the_lane(
    db_url: str,
) -> None:
    database = Database.from_url(db_url, pool_size=2)
    await driver.fetchrow(database, "SELECT 1 AS one")
    (conn, _, _) = driver.lane_of(database)._idle[0]
    await database.close()
    assert conn.is_closed()


async def test_disposing_the_engine_closes_the_lane(db_url: str) -> None:
    database = Database.from_url(db_url, pool_size=2)
    lane = driver.lane_of(database, size=2)
    await driver.fetchrow(database, "SELECT 1 AS one")
    (conn, _, _) = lane._idle[0]
    await database.close()
    assert conn.is_closed() and lane.opened == 0 and not lane._idle


async def test_a_full_lane_queues_statements_on_its_connections(db_url: str) -> None:
    database = Database.from_url(db_url, pool_size=2)
    try:
        lane = driver.lane_of(database, size=2)
        sleepy = "SELECT pg_sleep(0.2), $1::int AS n"
        started = asyncio.get_running_loop().time()
        rows = await asyncio.gather(*(driver.fetchrow(database, sleepy, n) for n in range(5)))
        elapsed = asyncio.get_running_loop().time() - started
        assert [r["n"] for r in rows] == list(range(5))
        assert lane.opened == lane.size == 2 and len(lane._idle) == 2
        assert elapsed >= 0.6  # three rounds on two connections
    finally:
        await database.close()


async def test_a_cancelled_statement_gives_its_place_back(db_url: str) -> None:
    """A caller gone mid-statement (a client that disconnected) drops that connection; the
    statements queued behind it still run."""
    database = Database.from_url(db_url, pool_size=1)
    driver.lane_of(database, size=1)
    try:
        slow = asyncio.ensure_future(driver.fetchrow(database, "SELECT pg_sleep(5)"))
        queued = asyncio.ensure_future(driver.fetchrow(database, "SELECT 7 AS n"))
        await asyncio.sleep(0.3)
        slow.cancel()
        assert (await asyncio.wait_for(queued, 5))["n"] == 7
        assert driver.lane_of(database).opened == 1
    finally:
        await database.close()


async def test_an_unreachable_database_is_unavailable_on_the_lane_too() -> None:
    database = Database.from_url("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(Unavailable, match="retry"):
            await driver.fetchrow(database, "SELECT 1")
        assert driver.lane_of(database).opened == 0
    finally:
        await database.close()

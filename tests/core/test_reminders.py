"""Due-date reminders: one `due_soon` and one `overdue` per task and due date, written by
@system under an advisory lock, exactly once even with housekeepers of several replicas racing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from taskflow.core import audit, reminders
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.errors import Conflict
from taskflow.core.handlers import webhooks as hook_ops
from taskflow.core.schemas import CreateHuman, CreateTask, RegisterAgent
from taskflow.core.services import tasks, workers, workflow
from tests.conftest import _admin_dsn
from tests.core.conftest import refused, sql

NOW = datetime.now(UTC).replace(microsecond=0)


async def _task(db: Database, owner: Actor, title: str, due: datetime | None) -> int:
    created = await tasks.create_task(
        db, owner, CreateTask(title=title, project="web", due_date=due)
    )
    return created.task.id


async def _reminders(db: Database) -> list[tuple[int, str, str, str, str]]:
    rows = await sql(
        db,
        "SELECT entity_id, action, actor_handle, actor_type, via FROM audit_log "
        "WHERE action IN ('due_soon', 'overdue') ORDER BY entity_id, id",
    )
    return [tuple(r) for r in rows]


async def test_due_soon_and_overdue_once_each_with_housekeepers_racing(
    db: Database, db_url: str, owner: Actor
) -> None:
    soon = await _task(db, owner, "soon", NOW + timedelta(hours=2))
    late = await _task(db, owner, "late", NOW - timedelta(hours=1))
    await _task(db, owner, "far", NOW + timedelta(days=3))
    await _task(db, owner, "undated", None)
    done = await _task(db, owner, "done late", NOW - timedelta(days=1))
    await workflow.start(db, owner, done)
    await workflow.complete(db, owner, done)

    replicas = [Database.from_url(db_url, pool_size=2) for _ in range(4)]  # four processes
    try:
        for _ in range(3):
            rounds = await asyncio.gather(*(reminders.remind(r, now=NOW) for r in replicas))
            assert all(isinstance(r, reminders.Reminded) for r in rounds)
    finally:
        for r in replicas:
            await r.close()

    assert await _reminders(db) == [
        (soon, "due_soon", "@system", "agent", "core"),
        (late, "overdue", "@system", "agent", "core"),
    ]
    sent = await sql(db, "SELECT task_id, kind FROM task_reminders ORDER BY task_id")
    assert [tuple(r) for r in sent] == [(soon, "due_soon"), (late, "overdue")]
    # @system was made once, and made its own `created` entry
    system = await sql(
        db,
        "SELECT w.type, w.agent_type, a.actor_handle FROM workers w JOIN audit_log a "
        "ON a.entity_type = 'worker' AND a.entity_id = w.id WHERE w.handle = '@system'",
    )
    assert [tuple(r) for r in system] == [("agent", "custom", "@system")]
    assert (await audit.verify(db)).ok


async def test_a_housekeeper_without_the_lock_writes_nothing(
    db: Database, pg_server_url: str, db_url: str, owner: Actor
) -> None:
    await _task(db, owner, "late", NOW - timedelta(hours=1))
    name = db_url.rsplit("/", 1)[1].split("?")[0]
    holder = await asyncpg.connect(_admin_dsn(pg_server_url, name))
    try:
        async with holder.transaction():  # another replica in the middle of its round
            await holder.execute("SELECT pg_advisory_xact_lock($1)", reminders.LOCK_KEY)
            assert await reminders.remind(db, now=NOW) == reminders.Reminded(ran=False)
            assert await _reminders(db) == []
    finally:
        await holder.close()
    assert await reminders.remind(db, now=NOW) == reminders.Reminded(ran=True, overdue=1)


async def test_later_reminders_follow_time_and_the_due_date(db: Database, owner: Actor) -> None:
    soon = await _task(db, owner, "soon", NOW + timedelta(hours=2))
    assert await reminders.remind(db, now=NOW) == reminders.Reminded(ran=True, due_soon=1)
    assert await reminders.remind(db, now=NOW + timedelta(hours=1)) == reminders.Reminded(ran=True)
    # past its due date: now it is overdue, once
    later = NOW + timedelta(hours=3)
    assert await reminders.remind(db, now=later) == reminders.Reminded(ran=True, overdue=1)
    assert await reminders.remind(db, now=later) == reminders.Reminded(ran=True)
    # a new due date is a new deadline: reminded again
    await workflow.set_due_date(db, owner, soon, later + timedelta(hours=5))
    assert await reminders.remind(db, now=later) == reminders.Reminded(ran=True, due_soon=1)
    actions = [a for _, a, *_ in await _reminders(db)]
    assert actions == ["due_soon", "overdue", "due_soon"]


async def test_reminders_are_events_webhooks_receive(db: Database, owner: Actor) -> None:
    made = await run(
        db,
        owner,
        hook_ops.CreateWebhook(
            project="web", url="http://127.0.0.1:9/r", events=["due_soon", "overdue"]
        ),
    )
    await _task(db, owner, "soon", NOW + timedelta(hours=2))
    await _task(db, owner, "late", NOW - timedelta(minutes=5))
    await reminders.remind(db, now=NOW)
    rows = await sql(db, "SELECT webhook_id, event FROM webhook_deliveries ORDER BY event")
    assert [tuple(r) for r in rows] == [
        (made.webhook.id, "task.due_soon"),
        (made.webhook.id, "task.overdue"),
    ]


async def test_nobody_takes_the_system_handle(db: Database, owner: Actor) -> None:
    await refused(
        db,
        workers.register_agent(db, owner, RegisterAgent(handle="@system", name="fake")),
        Conflict,
        "reserved",
    )
    await refused(
        db, workers.create_human(db, CreateHuman(handle="@system", name="x")), Conflict, "reserved"
    )

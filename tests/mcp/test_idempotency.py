"""Retries with an idempotency key: the first answer again, and nothing written twice."""

from __future__ import annotations

from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from taskflow.mcp_server.toolkit import REPLAYED_META
from tests.mcp.conftest import McpUser, Team, audit_count, call, ok, refused_unchanged, snapshot


async def test_retried_create_returns_the_first_result_and_writes_nothing(
    bot: McpUser, db: Database, team: Team
) -> None:
    args = {"title": "Once", "subtasks": [{"title": "child"}], "idempotency_key": "k-create-1"}
    first = await call(bot, "create_task", **args)
    before = await snapshot(db)
    entries = await audit_count(db)
    retry = await call(bot, "create_task", **args)
    assert ok(retry) == ok(first)
    assert (retry.meta or {}).get(REPLAYED_META) is True
    assert REPLAYED_META not in (first.meta or {})
    assert await audit_count(db) == entries
    assert await snapshot(db) == before


async def test_a_retried_verb_is_not_refused_the_second_time(
    bot: McpUser, db: Database, team: Team
) -> None:
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="T"))).task.id
    first = ok(await call(bot, "start_task", task_id=task_id, idempotency_key="start-1"))
    entries = await audit_count(db)
    again = ok(await call(bot, "start_task", task_id=task_id, idempotency_key="start-1"))
    assert again == first and await audit_count(db) == entries
    # Without a key, starting a task you already hold is an idempotent repeat: unchanged.
    without_key = ok(await call(bot, "start_task", task_id=task_id))
    assert without_key == first and await audit_count(db) == entries


async def test_same_key_with_other_arguments_is_refused(
    bot: McpUser, db: Database, team: Team
) -> None:
    ok(await call(bot, "create_task", title="A", idempotency_key="k-2"))
    message = await refused_unchanged(db, bot, "create_task", title="B", idempotency_key="k-2")
    assert "already used for a different request" in message


async def test_keys_belong_to_one_caller(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    mine = ok(await call(bot, "create_task", title="Bot's", idempotency_key="shared"))
    theirs = ok(await call(ann, "create_task", title="Bot's", idempotency_key="shared"))
    assert mine["task"]["id"] != theirs["task"]["id"]


async def test_a_failed_call_does_not_burn_its_key(bot: McpUser, db: Database, team: Team) -> None:
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="T"))).task.id
    args = {"task_id": task_id, "percent": 50, "idempotency_key": "p-1"}
    refusal = await refused_unchanged(db, bot, "update_progress", **args)
    assert f"Next: call start_task(task_id={task_id})" in refusal
    ok(await call(bot, "start_task", task_id=task_id))
    assert ok(await call(bot, "update_progress", **args))["progress_percent"] == 50

"""Issue 13's second half over MCP: named reviewers, parents finish last, recurrence."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask, SubtaskSpec, UpdateProject
from taskflow.core.services import projects, tasks
from tests.mcp.conftest import (
    McpUser,
    Team,
    audit_tail,
    call,
    ok,
    refused_unchanged,
    register_agent,
)


async def new_task(db: Database, team: Team, **fields: object) -> int:
    return (await tasks.create_task(db, team.sarah, CreateTask(title="Task", **fields))).task.id


async def test_only_the_named_reviewer_or_an_admin_decides(
    bot: McpUser,
    ann: McpUser,
    sarah: McpUser,
    db: Database,
    team: Team,
    user: Callable[[Actor], McpUser],
) -> None:
    other = user((await register_agent(db, team.sarah, "@other"))[0])
    task_id = await new_task(db, team)
    ok(await call(bot, "start_task", task_id=task_id))
    asked = ok(await call(bot, "request_review", task_id=task_id, reviewer="@ann"))
    assert asked["status"] == "review"
    assert ok(await call(ann, "get_task", task_id=task_id))["task"]["reviewer"] == "@ann"
    # "My work" for the reviewer lists it.
    mine = ok(await call(ann, "list_tasks", mine=True))
    assert [t["id"] for t in mine["items"]] == [task_id]
    own = await refused_unchanged(db, bot, "approve_task", task_id=task_id)
    assert "your own work" in own
    message = await refused_unchanged(db, other, "approve_task", task_id=task_id)
    assert "waiting for @ann's review: only @ann or a project admin" in message
    assert ok(await call(ann, "approve_task", task_id=task_id))["status"] == "completed"
    # The owner (an admin) may decide a review named for someone else.
    second = await new_task(db, team)
    ok(await call(bot, "start_task", task_id=second))
    ok(await call(bot, "request_review", task_id=second, reviewer="@ann"))
    assert ok(await call(sarah, "approve_task", task_id=second))["status"] == "completed"


async def test_parents_finish_last_names_the_open_subtasks(
    bot: McpUser, db: Database, team: Team
) -> None:
    parent = await new_task(db, team, subtasks=[SubtaskSpec(title="a"), SubtaskSpec(title="b")])
    kids = ok(await call(bot, "get_task", task_id=parent))["subtasks"]
    for task_id in (*kids, parent):
        ok(await call(bot, "start_task", task_id=task_id))
    message = await refused_unchanged(db, bot, "complete_task", task_id=parent)
    assert f"#{kids[0]} 'a' (in_progress), #{kids[1]} 'b' (in_progress)" in message
    assert "parents finish last" in message
    await projects.update_project(
        db, team.sarah, "default", UpdateProject(allow_open_subtasks=True)
    )
    assert ok(await call(bot, "complete_task", task_id=parent))["status"] == "completed"


async def test_a_recurring_task_recurs_and_a_bad_rule_is_refused(
    bot: McpUser, db: Database, team: Team
) -> None:
    made = ok(
        await call(
            bot, "create_task", title="standup", recurrence="every 2 days", due_date="2026-12-07"
        )
    )
    task_id = made["task"]["id"]
    ok(await call(bot, "start_task", task_id=task_id))
    ok(await call(bot, "complete_task", task_id=task_id))
    [entry] = await audit_tail(db)
    assert entry["action"] == "recurred" and entry["details"]["from_task_id"] == task_id
    nxt = ok(await call(bot, "get_task", task_id=entry["entity_id"]))["task"]
    assert nxt["due_date"].startswith("2026-12-09") and nxt["recurrence"] == "every 2 days"
    bad = await refused_unchanged(db, bot, "create_task", title="x", recurrence="fortnightly")
    assert bad.startswith("invalid input: recurrence")
    assert "daily, weekly, monthly, every N days, every N weeks" in bad and "RRULE" in bad
    legacy = await new_task(db, team)
    async with db.engine.begin() as conn:  # as Phase 1's importer writes it: free text
        await conn.execute(
            text("UPDATE tasks SET recurrence = 'mondays-ish' WHERE id = :id"), {"id": legacy}
        )
    shown = ok(await call(bot, "get_task", task_id=legacy))["task"]
    assert shown["recurrence"] == "mondays-ish" and shown["recurrence_legacy"] is True

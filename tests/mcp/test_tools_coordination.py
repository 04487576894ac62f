"""Coordination tools in-process: change_dependencies (a cycle refused naming it), claims that
respect blockers and capabilities, heartbeat and lease expiry; and their one-line rules."""

from __future__ import annotations

import asyncio

from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.schemas import AddMember, CreateTask, RegisterAgent
from taskflow.core.services import projects, tasks, workers
from taskflow.mcp_server import toolsets
from tests.mcp.conftest import (
    McpUser,
    Team,
    assert_audited,
    audit_tail,
    call,
    ok,
    refused_unchanged,
    register_agent,
)


async def new_task(db: Database, team: Team, title: str = "Task", **fields: object) -> int:
    cmd = CreateTask(title=title, **fields)
    return (await tasks.create_task(db, team.sarah, cmd)).task.id


async def test_dependencies_and_a_cycle_refused(bot: McpUser, db: Database, team: Team) -> None:
    a, b = await new_task(db, team, "a"), await new_task(db, team, "b")
    out = ok(await call(bot, "change_dependencies", task_id=b, blocked_by=[a]))
    assert out["blocked_by"] == [{"id": a, "done": False}]
    assert_audited((await audit_tail(db))[0], "dependency_added", "@claude-code")
    message = await refused_unchanged(db, bot, "change_dependencies", task_id=a, blocked_by=[b])
    assert f"cycle ({a} -> {b} -> {a};" in message
    message = await refused_unchanged(db, bot, "start_task", task_id=b)
    assert f"waits for open task {a}" in message
    ready = ok(await call(bot, "list_tasks", ready=True))
    assert [t["id"] for t in ready["items"]] == [a]
    removed = ok(await call(bot, "change_dependencies", task_id=b, blocker_id=a))
    assert removed["blocked_by"] == []


async def test_claim_lease_heartbeat_expiry_and_capabilities(
    bot: McpUser, user, db: Database, team: Team
) -> None:
    other_actor, _ = await register_agent(db, team.sarah, "@other")
    other = user(other_actor)
    await workers.register_agent(
        db, team.sarah, RegisterAgent(handle="@dba", name="dba", capabilities=["sql"])
    )
    await projects.add_member(db, team.sarah, "default", AddMember(handle="@dba"))
    needs = await new_task(db, team, "migrate", required_capabilities=["sql"], priority="high")
    plain = await new_task(db, team, "tidy")

    claimed = ok(await call(bot, "claim_next_task", lease_seconds=1))
    assert claimed["id"] == plain and claimed["lease_expires_at"]  # not the sql task
    beat = ok(await call(bot, "heartbeat", task_id=plain, lease_seconds=1))
    assert beat["lease_expires_at"] >= claimed["lease_expires_at"]
    assert_audited((await audit_tail(db))[0], "lease_renewed", "@claude-code")
    message = await refused_unchanged(db, other, "heartbeat", task_id=plain)
    assert "not in progress with you" in message
    await asyncio.sleep(1.3)
    taken = ok(await call(other, "claim_next_task"))
    assert taken["id"] == plain and taken["assignee"] == "@other"
    newest = await audit_tail(db, 2)
    assert [e["action"] for e in newest] == ["claimed", "lease_expired"]
    assert (newest[1]["actor_handle"], newest[1]["via"]) == ("@claude-code", "mcp")
    assert "no open unassigned task" in await refused_unchanged(db, other, "claim_next_task")
    assert needs  # still there, for a worker with `sql`


def test_coordination_tools_are_opt_in_and_state_their_rule_in_one_line() -> None:
    assert "coordination" not in toolsets.default()
    for name in ("change_dependencies", "heartbeat", "claim_next_task"):
        op = next(o for o in REGISTRY.values() if o.mcp == name)
        described = " ".join((op.handler.__doc__ or "").split())
        assert 20 < len(described) < 200, name


async def test_claim_skips_blocked_tasks_and_held_subtrees(
    bot: McpUser, user, db: Database, team: Team
) -> None:
    other_actor, _ = await register_agent(db, team.sarah, "@other")
    other = user(other_actor)
    feature = await new_task(db, team, "feature", priority="critical")
    blocker = await new_task(db, team, "blocker", priority="low")
    waiting = await new_task(db, team, "waiting", priority="critical")
    ok(await call(bot, "change_dependencies", task_id=waiting, blocked_by=[blocker]))
    assert ok(await call(bot, "claim_next_task"))["id"] == feature
    parts = ok(await call(bot, "add_subtasks", task_id=feature, subtasks=[{"title": "p1"}]))
    assert parts["items"][0]["assignee"] == "@claude-code"
    stray = await new_task(db, team, "stray", parent_id=feature, priority="critical")
    got = ok(await call(other, "claim_next_task"))
    assert got["id"] == blocker  # not `waiting` (blocked), not `stray` (inside a held subtree)
    ok(await call(other, "complete_task", task_id=blocker))
    assert ok(await call(other, "claim_next_task"))["id"] == waiting
    assert stray

"""Workflow tools in-process: every verb's happy path, its refusals, and its audit entry."""

from __future__ import annotations

import asyncio

from taskflow.core.db import Database
from taskflow.core.domain import ApprovalPolicy
from taskflow.core.schemas import AddMember, CreateProject, CreateTask, SubtaskSpec
from taskflow.core.services import projects, tasks, workflow
from tests.mcp.conftest import (
    McpUser,
    Team,
    assert_audited,
    audit_count,
    audit_tail,
    call,
    ok,
    refused_unchanged,
    register_agent,
)


async def new_task(db: Database, team: Team, **fields: object) -> int:
    return (await tasks.create_task(db, team.sarah, CreateTask(title="Task", **fields))).task.id


async def test_agent_works_a_task_and_a_human_approves(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    started = ok(await call(bot, "start_task", task_id=task_id, expected_version=1))
    assert (started["status"], started["assignee"], started["version"]) == (
        "in_progress",
        "@claude-code",
        2,
    )
    assert_audited((await audit_tail(db))[0], "started", "@claude-code")

    ok(await call(bot, "update_progress", task_id=task_id, percent=70, note="halfway+"))
    [entry] = await audit_tail(db)
    assert_audited(entry, "progressed", "@claude-code")
    assert entry["details"]["note"] == "halfway+" and entry["details"]["progress_percent"] == 70

    assert ok(await call(bot, "request_review", task_id=task_id))["status"] == "review"
    assert_audited((await audit_tail(db))[0], "review_requested", "@claude-code")

    own = await refused_unchanged(db, bot, "approve_task", task_id=task_id)
    assert "cannot approve your own work" in own

    approved = ok(await call(ann, "approve_task", task_id=task_id, note="ship it"))
    assert (approved["status"], approved["progress_percent"]) == ("completed", 100)
    [entry] = await audit_tail(db)
    assert_audited(entry, "approved", "@ann")
    assert entry["actor_type"] == "human"


async def test_progress_before_start_names_the_tool_to_call(
    bot: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    message = await refused_unchanged(db, bot, "update_progress", task_id=task_id, percent=10)
    assert message == (
        f"task {task_id} is pending: progress needs in_progress (start it first) "
        f"Next: call start_task(task_id={task_id})."
    )
    too_much = await refused_unchanged(db, bot, "update_progress", task_id=task_id, percent=101)
    assert too_much.startswith("invalid input: percent")


async def test_review_needs_work_in_progress(bot: McpUser, db: Database, team: Team) -> None:
    task_id = await new_task(db, team)
    message = await refused_unchanged(db, bot, "request_review", task_id=task_id)
    assert "it cannot move to review" in message and "Next: call start_task(" in message


async def test_approve_needs_review_first(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    message = await refused_unchanged(db, ann, "approve_task", task_id=task_id)
    assert "not in review" in message and f"call request_review(task_id={task_id})" in message


async def test_reject_sends_back_with_a_reason(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    await workflow.start(db, team.bot, task_id)
    await workflow.request_review(db, team.bot, task_id)
    assert "reason" in await refused_unchanged(db, ann, "reject_task", task_id=task_id, reason="")
    out = ok(await call(ann, "reject_task", task_id=task_id, reason="add tests"))
    assert out["status"] == "in_progress"
    [entry] = await audit_tail(db)
    assert_audited(entry, "rejected", "@ann")
    assert entry["details"]["reason"] == "add tests"


async def test_complete_and_review_required_projects(
    bot: McpUser, sarah: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    not_started = await refused_unchanged(db, bot, "complete_task", task_id=task_id)
    assert "Next: call start_task(" in not_started
    await workflow.start(db, team.bot, task_id)
    done = ok(await call(bot, "complete_task", task_id=task_id))
    assert (done["status"], done["progress_percent"]) == ("completed", 100)
    assert_audited((await audit_tail(db))[0], "completed", "@claude-code")

    await projects.create_project(
        db,
        team.sarah,
        CreateProject(slug="strict", name="Strict", approval_policy=ApprovalPolicy.REVIEW_REQUIRED),
    )
    strict = (
        await tasks.create_task(db, team.sarah, CreateTask(title="S", project="strict"))
    ).task.id
    await workflow.start(db, team.sarah, strict)
    message = await refused_unchanged(db, sarah, "complete_task", task_id=strict)
    assert "requires review" in message and f"call request_review(task_id={strict})" in message


async def test_assign_and_unassign(bot: McpUser, ann: McpUser, db: Database, team: Team) -> None:
    task_id = await new_task(db, team)
    assert (
        ok(await call(bot, "assign_task", task_id=task_id, assignee="@ann"))["assignee"] == "@ann"
    )
    [entry] = await audit_tail(db)
    assert_audited(entry, "assigned", "@claude-code")
    assert entry["details"]["assignee"] == "@ann"
    # assign follows delegate's rule: @ann holds it now, so only she (or an admin) moves it.
    theirs = await refused_unchanged(db, bot, "assign_task", task_id=task_id, assignee=None)
    assert "only its assignee or a project admin" in theirs
    assert ok(await call(ann, "assign_task", task_id=task_id, assignee=None))["assignee"] is None
    ghost = await refused_unchanged(db, bot, "assign_task", task_id=task_id, assignee="@ghost")
    assert "no worker @ghost" in ghost
    missing = await refused_unchanged(db, bot, "assign_task", task_id=task_id)
    assert missing == "invalid input: assignee: Field required"  # null must be said, not implied


async def test_delegate_your_own_task_only(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team, assignee="@claude-code")
    theirs = await refused_unchanged(db, ann, "delegate_task", task_id=task_id, to="@ann")
    assert "only its assignee or a project admin" in theirs
    out = ok(await call(bot, "delegate_task", task_id=task_id, to="@ann"))
    assert out["assignee"] == "@ann"
    [entry] = await audit_tail(db)
    assert_audited(entry, "delegated", "@claude-code")
    assert (entry["details"]["from"], entry["details"]["to"]) == ("@claude-code", "@ann")


async def test_block_and_unblock(bot: McpUser, db: Database, team: Team) -> None:
    task_id = await new_task(db, team)
    await workflow.start(db, team.bot, task_id)
    assert "not blocked" in await refused_unchanged(db, bot, "unblock_task", task_id=task_id)
    blocked = ok(await call(bot, "block_task", task_id=task_id, reason="waiting on API keys"))
    assert blocked["status"] == "blocked"
    [entry] = await audit_tail(db)
    assert_audited(entry, "blocked", "@claude-code")
    assert entry["details"]["reason"] == "waiting on API keys"
    before = await audit_count(db)
    again = ok(await call(bot, "block_task", task_id=task_id))  # a repeat: answered unchanged
    assert again == blocked and await audit_count(db) == before
    assert ok(await call(bot, "unblock_task", task_id=task_id))["status"] == "in_progress"
    assert_audited((await audit_tail(db))[0], "unblocked", "@claude-code")


async def test_claim_next_task_takes_the_most_urgent(
    bot: McpUser, db: Database, team: Team
) -> None:
    await new_task(db, team, priority="low")
    urgent = await new_task(db, team, priority="critical")
    await new_task(db, team, priority="high", project="web")  # not the bot's project
    claimed = ok(await call(bot, "claim_next_task"))
    assert claimed["id"] == urgent
    assert (claimed["status"], claimed["assignee"]) == ("in_progress", "@claude-code")
    assert "description" in claimed  # the whole task: the agent is about to work on it
    [entry] = await audit_tail(db)
    assert_audited(entry, "claimed", "@claude-code")
    ok(await call(bot, "claim_next_task"))
    empty = await refused_unchanged(db, bot, "claim_next_task")
    assert "no open unassigned task to claim" in empty
    assert "in project web" in await refused_unchanged(db, bot, "claim_next_task", project="web")


async def test_two_agents_claiming_at_once_never_get_the_same_task(
    db: Database, team: Team, user: object
) -> None:
    """FOR UPDATE SKIP LOCKED in the core, exercised through two MCP servers at once."""
    other, _ = await register_agent(db, team.sarah, "@gemini")
    for n in range(8):
        await new_task(db, team, priority=("low", "high")[n % 2])
    agents = [user(team.bot), user(other)]  # type: ignore[operator]

    async def claim_all(agent: McpUser) -> list[int]:
        got = []
        while True:
            result = await call(agent, "claim_next_task")
            if result.is_error:
                assert "no open unassigned task" in result.content[0].text  # type: ignore[union-attr]
                return got
            got.append(result.structured_content["id"])  # type: ignore[index]

    first, second = await asyncio.gather(*(claim_all(a) for a in agents))
    assert not set(first) & set(second)
    assert len(first) + len(second) == 8
    assert first and second  # both really competed


async def test_work_times_and_seed_ids_through_a_review_cycle(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    """get_task shows when work first started and when it was done, and the seed's id fields."""
    strict = await projects.create_project(
        db,
        team.sarah,
        CreateProject(slug="strict", name="Strict", approval_policy=ApprovalPolicy.REVIEW_REQUIRED),
    )
    for handle in ("@claude-code", "@ann"):
        await projects.add_member(db, team.sarah, "strict", AddMember(handle=handle))
    task_id = await new_task(db, team, project="strict")

    async def read() -> dict[str, object]:
        return ok(await call(bot, "get_task", task_id=task_id))["task"]

    ok(await call(bot, "start_task", task_id=task_id))
    first = (await read())["started_at"]
    assert first is not None
    ok(await call(bot, "request_review", task_id=task_id))
    ok(await call(ann, "reject_task", task_id=task_id, reason="add a test"))
    rejected = await read()
    assert (rejected["status"], rejected["started_at"], rejected["completed_at"]) == (
        "in_progress",
        first,
        None,
    )
    ok(await call(bot, "request_review", task_id=task_id))
    ok(await call(ann, "approve_task", task_id=task_id))
    approved = await read()
    assert approved["started_at"] == first and approved["completed_at"] is not None
    ok(await call(bot, "request_review", task_id=task_id))  # completed -> review: reopened
    task = await read()
    assert (task["status"], task["started_at"], task["completed_at"]) == ("review", first, None)
    assert (task["project_id"], task["assignee_id"], task["created_by_id"]) == (
        strict.id,
        team.bot.worker_id,
        team.sarah.worker_id,
    )
    assert task["parent_task_id"] is None


async def test_get_task_lists_direct_children_and_claim_stamps_the_start(
    bot: McpUser, db: Database, team: Team
) -> None:
    root = await tasks.create_task(
        db,
        team.sarah,
        CreateTask(title="Root", subtasks=[SubtaskSpec(title="a"), SubtaskSpec(title="b")]),
    )
    kids = [n.id for n in root.subtree]
    await tasks.add_subtasks(db, team.sarah, kids[0], [SubtaskSpec(title="deep")])
    detail = ok(await call(bot, "get_task", task_id=root.task.id))
    assert detail["subtasks"] == kids and len(detail["subtree"]) == 3
    assert all(n["parent_task_id"] == n["parent_id"] for n in detail["subtree"])
    claimed = ok(await call(bot, "claim_next_task"))
    assert claimed["started_at"] is not None and claimed["assignee_id"] == team.bot.worker_id


# ---------------------------------------------------------------- rules live on transitions


async def test_unknown_arguments_no_ops_and_repeats(bot: McpUser, db: Database, team: Team) -> None:
    task_id = await new_task(db, team)
    typo = await refused_unchanged(db, bot, "start_task", task_id=task_id, expected_verison=1)
    assert "did you mean 'expected_version'?" in typo
    started = ok(await call(bot, "start_task", task_id=task_id))
    before = await audit_count(db)
    assert ok(await call(bot, "start_task", task_id=task_id)) == started  # a repeat
    same = ok(await call(bot, "assign_task", task_id=task_id, assignee="@claude-code"))
    assert same == started and await audit_count(db) == before  # a no-op


async def test_review_left_only_by_verdict_or_withdrawal(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = await new_task(db, team)
    ok(await call(bot, "start_task", task_id=task_id))
    ok(await call(bot, "request_review", task_id=task_id))
    message = await refused_unchanged(db, ann, "update_task", task_id=task_id, status="completed")
    assert "takes it out of review" in message
    assert f"Next: call approve_task(task_id={task_id})" in message
    assert ok(await call(bot, "start_task", task_id=task_id))["status"] == "in_progress"


async def test_self_approval_through_an_edit_is_refused(
    bot: McpUser, db: Database, team: Team
) -> None:
    strict = await projects.create_project(
        db,
        team.sarah,
        CreateProject(slug="strict", name="Strict", approval_policy=ApprovalPolicy.REVIEW_REQUIRED),
    )
    await projects.add_member(db, team.sarah, strict.slug, AddMember(handle="@claude-code"))
    task_id = await new_task(db, team, project="strict")
    ok(await call(bot, "start_task", task_id=task_id))
    edited = ok(await call(bot, "update_task", task_id=task_id, status="review", assignee=None))
    assert (edited["status"], edited["assignee"]) == ("review", None)
    assert_audited((await audit_tail(db))[0], "review_requested", "@claude-code")
    assert "your own work" in await refused_unchanged(db, bot, "approve_task", task_id=task_id)


async def test_reopen_task(bot: McpUser, ann: McpUser, db: Database, team: Team) -> None:
    task_id = await new_task(db, team)
    pending = await refused_unchanged(db, bot, "reopen_task", task_id=task_id)
    assert f"Next: call start_task(task_id={task_id})" in pending
    ok(await call(bot, "start_task", task_id=task_id))
    ok(await call(bot, "complete_task", task_id=task_id))
    reopened = ok(await call(ann, "reopen_task", task_id=task_id))
    assert reopened["status"] == "review"
    [entry] = await audit_tail(db)
    assert_audited(entry, "review_requested", "@ann")
    assert entry["details"]["reopened"] is True


async def test_move_task_runs_the_verb_for_the_status(
    bot: McpUser, db: Database, team: Team
) -> None:
    """`move_task` (toolset `board`, which the test user is offered) names the status."""
    task_id = await new_task(db, team)
    moved = ok(await call(bot, "move_task", task_id=task_id, status="in_progress"))
    assert (moved["status"], moved["assignee"]) == ("in_progress", "@claude-code")
    assert_audited((await audit_tail(db))[0], "started", "@claude-code")
    assert "not blocked" in await refused_unchanged(
        db, bot, "move_task", task_id=task_id, status="pending"
    )
    assert "status" in await refused_unchanged(db, bot, "move_task", task_id=task_id, status="done")

"""Coordination in the core: dependencies, claims that respect the work graph, leases and
capability routing (issue 13)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.domain import Role, TaskStatus, WorkerType
from taskflow.core.errors import (
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from taskflow.core.handlers.coordination import ChangeDependencies, Heartbeat
from taskflow.core.handlers.tasks import AddSubtasks, DeleteTask, GetTask, ListTasks
from taskflow.core.handlers.workflow import ClaimNext, Progress, Start
from taskflow.core.schemas import (
    AddMember,
    CreateTask,
    RegisterAgent,
    SubtaskSpec,
    TaskOut,
    UpdateProject,
)
from taskflow.core.services import projects, workers, workflow
from tests.core.conftest import Team, add_to, refused, scalar, sql, tail


async def _task(db: Database, actor: Actor, title: str, **fields) -> int:
    return (await run(db, actor, CreateTask(title=title, project="web", **fields))).task.id


async def _agent(db: Database, owner: Actor, handle: str, capabilities=()) -> Actor:
    issued = await workers.register_agent(
        db, owner, RegisterAgent(handle=handle, name=handle[1:], capabilities=list(capabilities))
    )
    await projects.add_member(db, owner, "web", AddMember(handle=handle, role=Role.MEMBER))
    return Actor(worker_id=issued.worker.id, handle=handle, type=WorkerType.AGENT)


async def _depends(db: Database, actor: Actor, task: int, *blockers: int) -> TaskOut:
    return await run(db, actor, ChangeDependencies(task_id=task, blocked_by=list(blockers)))


async def _claim(db: Database, actor: Actor, **fields) -> TaskOut:
    return await run(db, actor, ClaimNext(project="web", **fields))


# ------------------------------------------------------------------ dependencies


async def test_blockers_are_part_of_the_task_and_audited_on_both(db, team: Team):
    a = await _task(db, team.owner, "a")
    b = await _task(db, team.owner, "b")
    c = await _task(db, team.owner, "c")
    log = await tail(db)
    out = await _depends(db, team.member, c, a, b)
    assert [(x.id, x.done) for x in out.blocked_by] == [(a, False), (b, False)]
    assert out.version == 2
    entries = await log.new()
    assert sorted((e["entity_id"], e["action"]) for e in entries) == [
        (a, "dependency_added"),
        (b, "dependency_added"),
        (c, "dependency_added"),
    ]
    on_c = next(e for e in entries if e["entity_id"] == c)
    assert on_c["details"] == {"blocked_by": [a, b]}
    assert next(e for e in entries if e["entity_id"] == a)["details"] == {"blocks": c}

    again = await tail(db)
    assert (await _depends(db, team.member, c, a)).version == 2  # already there: nothing
    assert await again.new() == []

    await workflow.start(db, team.member, a)
    await workflow.complete(db, team.member, a)
    shown = (await run(db, team.member, GetTask(task_id=c))).task
    assert [(x.id, x.done) for x in shown.blocked_by] == [(a, True), (b, False)]

    removed = await run(db, team.member, ChangeDependencies(task_id=c, blocker_id=b))
    assert [x.id for x in removed.blocked_by] == [a]
    await refused(
        db,
        run(db, team.member, ChangeDependencies(task_id=c, blocker_id=b)),
        NotFound,
        f"task {c} is not blocked by task {b}",
    )


async def test_a_delete_audits_the_dependencies_it_takes_on_the_tasks_that_stay(db, team: Team):
    blocker = await _task(db, team.owner, "blocker")
    doomed = await _task(db, team.owner, "doomed")
    waiting = await _task(db, team.owner, "waiting")
    await _depends(db, team.owner, doomed, blocker)  # doomed waits for blocker
    await _depends(db, team.owner, waiting, doomed)  # waiting waits for doomed
    before = (await run(db, team.owner, GetTask(task_id=waiting))).task.version
    log = await tail(db)
    await run(db, team.owner, DeleteTask(task_id=doomed))
    entries = {(e["entity_id"], e["action"]): e["details"] for e in await log.new()}
    assert entries[(waiting, "dependency_removed")] == {"unblocked_by": [doomed], "deleted": True}
    assert entries[(blocker, "dependency_removed")] == {"no_longer_blocks": doomed, "deleted": True}
    assert (doomed, "deleted") in entries and len(entries) == 3
    after = (await run(db, team.owner, GetTask(task_id=waiting))).task
    assert after.blocked_by == [] and after.version == before + 1
    assert (await audit.verify(db)).ok


async def test_a_cycle_is_refused_naming_it_and_nothing_changes(db, team: Team):
    a, b, c = [await _task(db, team.owner, n) for n in "abc"]
    await _depends(db, team.owner, b, a)  # b waits for a
    await _depends(db, team.owner, c, b)  # c waits for b
    err = await refused(
        db, _depends(db, team.owner, a, c), Conflict, rf"cycle \({a} -> {c} -> {b} -> {a};"
    )
    assert err.extra["cycle"] == [a, c, b, a]
    await refused(db, _depends(db, team.owner, a, a), Conflict, "cannot wait for itself")


async def test_blockers_must_be_visible_and_the_change_needs_a_member(db, team: Team):
    a = await _task(db, team.owner, "a")
    elsewhere = (await run(db, team.owner, CreateTask(title="x", project="default"))).task.id
    # @mike is not a member of `default`: its task is not his to name.
    await refused(db, _depends(db, team.member, a, elsewhere), NotFound, f"task {elsewhere}")
    # Across projects when the caller sees both.
    out = await _depends(db, team.owner, a, elsewhere)
    assert [x.id for x in out.blocked_by] == [elsewhere]
    await refused(db, _depends(db, team.viewer, a, elsewhere), Forbidden)
    with pytest.raises(ValidationFailed, match="nothing to change"):
        await run(db, team.owner, ChangeDependencies(task_id=a))


async def test_start_is_refused_while_a_blocker_is_open(db, team: Team):
    a = await _task(db, team.owner, "a")
    b = await _task(db, team.owner, "b")
    await _depends(db, team.owner, b, a)
    err = await refused(
        db, workflow.start(db, team.member, b), InvalidTransition, f"waits for open task {a}"
    )
    assert err.extra["open_blockers"] == [a]
    await workflow.start(db, team.member, a)
    await workflow.complete(db, team.member, a)
    assert (await workflow.start(db, team.member, b)).status is TaskStatus.IN_PROGRESS


async def test_list_filters_ready_and_blocked(db, team: Team):
    a, b, c = [await _task(db, team.owner, n) for n in "abc"]
    await _depends(db, team.owner, b, a)
    ready = await run(db, team.owner, ListTasks(project="web", ready=True))
    blocked = await run(db, team.owner, ListTasks(project="web", blocked=True))
    assert [t.id for t in ready.items] == [a, c]
    assert [t.id for t in blocked.items] == [b]
    assert [x.id for x in blocked.items[0].blocked_by] == [a]


# ------------------------------------------------------------------ claims and the work graph


async def test_claim_skips_blocked_tasks_and_held_subtrees(db, team: Team, owner):
    first = await _agent(db, owner, "@one")
    second = await _agent(db, owner, "@two")
    parent = await _task(db, owner, "the feature", priority="critical")
    blocker = await _task(db, owner, "blocker", priority="low")
    waiting = await _task(db, owner, "waiting", priority="critical")
    await _depends(db, owner, waiting, blocker)

    claimed = await _claim(db, first)  # the parent is a leaf still, and the most urgent
    assert claimed.id == parent and claimed.assignee == "@one"
    assert claimed.lease_expires_at is not None
    # @one breaks it into parts: they are @one's, so @two cannot take them from under it.
    parts = await run(
        db,
        first,
        AddSubtasks(task_id=parent, subtasks=[SubtaskSpec(title=f"part {i}") for i in range(3)]),
    )
    assert {p.assignee for p in parts} == {"@one"}
    # Even an unassigned part, made by someone else, stays inside @one's held subtree.
    stray = (
        await run(db, owner, CreateTask(title="stray", parent_id=parent, priority="critical"))
    ).task
    assert stray.assignee is None

    got = await _claim(db, second)  # not the blocked task, not the held subtree
    assert got.id == blocker
    await workflow.complete(db, second, blocker)
    got = await _claim(db, second)
    assert got.id == waiting and all(x.done for x in got.blocked_by)
    with pytest.raises(NotFound, match="no open unassigned task"):
        await _claim(db, second)
    # The holder itself may take unassigned work inside its own subtree.
    assert (await _claim(db, first)).id == stray.id


async def test_claim_order_is_priority_then_due_date_then_age(db, team: Team, owner):
    bot = await _agent(db, owner, "@bot")
    late = await _task(db, owner, "late", due_date="2031-01-01")
    soon = await _task(db, owner, "soon", due_date="2030-01-01")
    none = await _task(db, owner, "none")
    high = await _task(db, owner, "high", priority="high")
    order = [(await _claim(db, bot)).id for _ in range(4)]
    assert order == [high, soon, late, none]


async def test_capability_routing(db, team: Team, owner):
    plain = await _agent(db, owner, "@plain")
    coder = await _agent(db, owner, "@coder", ["python", "sql"])
    needs = await _task(db, owner, "migrate", required_capabilities=["sql"], priority="high")
    anyone = await _task(db, owner, "tidy")
    assert (await _claim(db, plain)).id == anyone
    with pytest.raises(NotFound):
        await _claim(db, plain)
    got = await _claim(db, coder)
    assert got.id == needs and got.required_capabilities == ["sql"]
    listed = await run(db, owner, ListTasks(project="web", required_capabilities=["sql"]))
    assert [t.id for t in listed.items] == [needs]


# ------------------------------------------------------------------ leases


async def test_an_expired_lease_frees_the_task_for_another_agent_once(db, team: Team, owner):
    first = await _agent(db, owner, "@one")
    second = await _agent(db, owner, "@two")
    t = await _task(db, owner, "work")
    claimed = await _claim(db, first, lease_seconds=1)
    assert claimed.id == t
    await workflow.progress(db, first, t, 40)
    await asyncio.sleep(1.3)
    log = await tail(db)
    # Two claims at once: the lapse is applied once, and only one of them gets the task.
    got = await asyncio.gather(_claim(db, second), _claim(db, second), return_exceptions=True)
    winners = [g for g in got if isinstance(g, TaskOut)]
    assert [w.id for w in winners] == [t]
    assert winners[0].assignee == "@two" and winners[0].progress_percent == 40
    expired = [e for e in await log.new() if e["action"] == "lease_expired"]
    assert len(expired) == 1
    entry = expired[0]
    assert (entry["entity_id"], entry["actor_handle"]) == (t, "@one")
    assert entry["details"]["changes"]["status"] == {"old": "in_progress", "new": "pending"}
    assert entry["details"]["applied_by"] == "claim_next"
    total = await scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'lease_expired'")
    assert total == 1
    assert (await audit.verify(db)).ok  # the holder's entry, written by another's call, chains


async def test_a_read_applies_the_lapse(db, team: Team, owner):
    bot = await _agent(db, owner, "@bot")
    t = await _task(db, owner, "work")
    await _claim(db, bot, lease_seconds=1)
    await asyncio.sleep(1.2)
    shown = (await run(db, owner, GetTask(task_id=t))).task
    assert (shown.status, shown.assignee, shown.lease_expires_at) == (
        TaskStatus.PENDING,
        None,
        None,
    )
    await run(db, owner, ListTasks(project="web"))  # nothing left to apply
    assert await scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'lease_expired'") == 1


async def test_progress_and_heartbeat_renew_the_lease(db, team: Team, owner):
    bot = await _agent(db, owner, "@bot")
    t = await _task(db, owner, "work")
    claimed = await _claim(db, bot, lease_seconds=60)
    after_progress = await workflow.progress(db, bot, t, 10)
    assert after_progress.lease_expires_at > claimed.lease_expires_at
    beat = await run(db, bot, Heartbeat(task_id=t, lease_seconds=3600))
    assert (beat.lease_expires_at - after_progress.lease_expires_at).total_seconds() > 3000
    assert beat.version == after_progress.version  # a lease is not the task's content
    log = await tail(db)
    same = await run(db, bot, Progress(task_id=t, percent=10))  # same progress: still a renewal
    assert same.lease_expires_at >= beat.lease_expires_at - timedelta(hours=1)
    assert [e["action"] for e in await log.new()] == ["lease_renewed"]
    # Not the holder, or no lease: refused, nothing changes.
    await refused(db, run(db, owner, Heartbeat(task_id=t)), InvalidTransition, "not in progress")
    manual = await _task(db, owner, "by hand")
    await run(db, owner, Start(task_id=manual))
    await refused(db, run(db, owner, Heartbeat(task_id=manual)), InvalidTransition, "no lease")
    # Leaving in_progress ends the lease.
    done = await workflow.complete(db, bot, t)
    assert done.lease_expires_at is None


async def test_the_project_sets_the_default_lease(db, team: Team, owner):
    bot = await _agent(db, owner, "@bot")
    out = await projects.update_project(db, owner, "web", UpdateProject(lease_seconds=120))
    assert out.lease_seconds == 120
    await _task(db, owner, "work")
    claimed = await _claim(db, bot)
    (seconds,) = (await sql(db, "SELECT lease_seconds FROM tasks WHERE id = :i", i=claimed.id))[0]
    assert seconds == 120
    span = await scalar(
        db,
        "SELECT extract(epoch FROM lease_expires_at - updated_at) FROM tasks WHERE id = :i",
        i=claimed.id,
    )
    assert float(span) == pytest.approx(120, abs=1)


async def test_subtasks_by_the_assignee_inherit_it(db, team: Team):
    parent = await _task(db, team.owner, "p")
    await workflow.start(db, team.member, parent)
    made = await run(db, team.member, CreateTask(title="part", parent_id=parent))
    assert made.task.assignee == "@mike"
    other = await add_to(db, team.owner, "web", "@zed", Role.MEMBER)
    by_other = await run(db, other, CreateTask(title="other", parent_id=parent))
    assert by_other.task.assignee is None


async def test_the_server_housekeeping_releases_expired_leases(db, team: Team, owner):
    from taskflow.core import housekeeping

    bot = await _agent(db, owner, "@bot")
    t = await _task(db, owner, "work")
    await _claim(db, bot, lease_seconds=1)
    assert await housekeeping.release_leases(db) == []  # not yet
    await asyncio.sleep(1.2)
    log = await tail(db)
    assert await housekeeping.release_leases(db) == [t]
    entry = await log.one()
    assert (entry["action"], entry["actor_handle"], entry["via"]) == (
        "lease_expired",
        "@bot",
        "core",
    )
    assert entry["details"]["applied_by"] == "housekeeping"
    assert await housekeeping.release_leases(db) == []
    assert (await scalar(db, "SELECT status FROM tasks WHERE id = :i", i=t)) == "pending"

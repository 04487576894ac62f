"""The workflow verbs and Phase 1's rules: transitions, auto-assign, review, approval policy."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import pytest

from taskflow.core.domain import TRANSITIONS, ApprovalPolicy, Priority, TaskStatus
from taskflow.core.errors import (
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NextStep,
    NotFound,
    StaleVersion,
    ValidationFailed,
)
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec, TaskFilter, UpdateProject
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.core.conftest import assert_entry, refused, sql, tail

S = TaskStatus


def iso(moment: datetime | None) -> str:
    """A timestamp as audit details hold it (JSON: ISO 8601, `Z` for UTC)."""
    assert moment is not None
    return moment.isoformat().replace("+00:00", "Z")


async def _task(db, actor, title="t", project="web", **kw):
    return (await tasks.create_task(db, actor, CreateTask(title=title, project=project, **kw))).task


async def _force(db, task_id, status, assignee_id=None):
    """Put a task in a status directly (test setup only; bypasses the workflow on purpose)."""
    await sql(
        db,
        "UPDATE tasks SET status = :s, assignee_id = :a WHERE id = :id",
        s=str(status),
        a=assignee_id,
        id=task_id,
    )


# Phase 1's table, written out again so a change to the code's table must be deliberate.
PHASE1 = {
    ("pending", "in_progress"),
    ("pending", "blocked"),
    ("in_progress", "review"),
    ("in_progress", "completed"),
    ("in_progress", "blocked"),
    ("review", "in_progress"),
    ("review", "completed"),
    ("completed", "review"),
    ("blocked", "pending"),
    ("blocked", "in_progress"),
}


def test_transition_table_is_phase1s():
    assert {(str(a), str(b)) for a, tos in TRANSITIONS.items() for b in tos} == PHASE1


async def test_every_status_pair_through_edit_task(db, team):
    """All 20 moves between different statuses: the 10 allowed succeed (but the two out of
    review, which only a reviewer's verdict or the requester makes), the others are refused with
    a message naming what the task can do instead, and change nothing. An edit writes the entry
    its verb would, so the history cannot tell a status edit from the verb."""
    pairs = [(a, b) for a, b in product(S, S) if a != b]
    ids = [(await _task(db, team.owner, f"{a}->{b}")).id for a, b in pairs]
    for task_id, (a, _) in zip(ids, pairs, strict=True):
        await _force(db, task_id, a, team.member.worker_id)
    verb_entry = {
        S.IN_PROGRESS: "started",
        S.REVIEW: "review_requested",
        S.COMPLETED: "completed",
        S.BLOCKED: "blocked",
        S.PENDING: "unblocked",
    }
    for task_id, (a, b) in zip(ids, pairs, strict=True):
        if a is S.REVIEW and (str(a), str(b)) in PHASE1:
            err = await refused(
                db,
                tasks.edit_task(db, team.member, task_id, EditTask(status=b)),
                InvalidTransition,
            )
            assert "only another member's approval or rejection" in err.message
            assert err.next_step is not None and err.next_step.operation in ("approve", "reject")
        elif (str(a), str(b)) in PHASE1:
            log = await tail(db)
            out = await tasks.edit_task(db, team.member, task_id, EditTask(status=b))
            assert out.status is b, (a, b)
            entry = await log.one()
            assert entry["action"] == verb_entry[b] and entry["details"]["by_edit"] is True
            assert entry["details"]["changes"]["status"] == {"old": str(a), "new": str(b)}
        else:
            err = await refused(
                db,
                tasks.edit_task(db, team.member, task_id, EditTask(status=b)),
                InvalidTransition,
            )
            assert f"is {a}: it cannot move to {b}" in err.message
            for allowed in TRANSITIONS[a]:
                assert str(allowed) in err.message
            assert (err.extra["current"], err.extra["target"]) == (str(a), str(b))


async def test_start_auto_assigns_and_audits(db, team):
    t = await _task(db, team.owner)
    log = await tail(db)
    out = await workflow.start(db, team.member, t.id, expected_version=1)
    assert (out.status, out.assignee, out.version) == (S.IN_PROGRESS, "@mike", 2)
    entry = await log.one()
    assert_entry(entry, action="started", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {
            "status": {"old": "pending", "new": "in_progress"},
            "assignee_id": {"old": None, "new": team.member.worker_id},
            "started_at": {"old": None, "new": iso(out.started_at)},
        }
    }
    assert out.started_at == out.updated_at  # the change's own instant


async def test_start_keeps_an_existing_assignee(db, team):
    t = await _task(db, team.owner, assignee="@nina")
    out = await workflow.start(db, team.member, t.id)
    assert out.assignee == "@nina"


async def test_start_refusals(db, team):
    t = await _task(db, team.owner)
    await refused(db, workflow.start(db, team.viewer, t.id), Forbidden)
    await refused(db, workflow.start(db, team.stranger, t.id), NotFound)
    await refused(db, workflow.start(db, team.member, t.id, expected_version=3), StaleVersion)
    await _force(db, t.id, S.COMPLETED)
    err = await refused(db, workflow.start(db, team.member, t.id), InvalidTransition)
    assert "can move to: review" in err.message and err.extra["allowed"] == ["reopen_task"]
    assert err.next_step == NextStep("reopen_task", {"task_id": t.id})


async def test_progress_needs_in_progress_and_records_note(db, team):
    t = await _task(db, team.owner)
    err = await refused(db, workflow.progress(db, team.member, t.id, 10), InvalidTransition)
    assert "needs in_progress" in err.message and "start" in err.message
    await workflow.start(db, team.member, t.id)
    for bad in (-1, 101):
        err = await refused(db, workflow.progress(db, team.member, t.id, bad), InvalidInput)
        assert err.problems[0].field == "percent"
    log = await tail(db)
    out = await workflow.progress(db, team.member, t.id, 40, "halfway-ish")
    assert out.progress_percent == 40
    entry = await log.one()
    assert_entry(entry, action="progressed", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"progress_percent": {"old": 0, "new": 40}},
        "progress_percent": 40,
        "note": "halfway-ish",
    }
    await workflow.request_review(db, team.member, t.id)
    err = await refused(db, workflow.progress(db, team.member, t.id, 50), InvalidTransition)
    assert "review" in err.message and "start it again" in err.message
    assert err.next_step == NextStep("start", {"task_id": t.id})
    await workflow.approve(db, team.member2, t.id)
    err = await refused(db, workflow.progress(db, team.member, t.id, 50), InvalidTransition)
    assert "reopen it" in err.message
    assert err.next_step == NextStep("reopen_task", {"task_id": t.id})


async def test_review_approve_by_another_member(db, team):
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    log = await tail(db)
    out = await workflow.request_review(db, team.member, t.id)
    assert out.status is S.REVIEW
    entry = await log.one()
    assert_entry(entry, action="review_requested", actor=team.member, entity="task")
    assert entry["details"] == {"changes": {"status": {"old": "in_progress", "new": "review"}}}
    err = await refused(db, workflow.approve(db, team.member, t.id), Forbidden)
    assert "your own work" in err.message
    await refused(db, workflow.approve(db, team.viewer, t.id), Forbidden)
    log = await tail(db)
    out = await workflow.approve(db, team.member2, t.id, "looks good")
    assert (out.status, out.progress_percent) == (S.COMPLETED, 100)
    entry = await log.one()
    assert_entry(entry, action="approved", actor=team.member2, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {
            "status": {"old": "review", "new": "completed"},
            "progress_percent": {"old": 0, "new": 100},
            "completed_at": {"old": None, "new": iso(out.completed_at)},
        },
        "note": "looks good",
    }
    err = await refused(db, workflow.approve(db, team.member2, t.id), InvalidTransition)
    assert "ask for a review first" in err.message
    assert err.next_step == NextStep("request_review", {"task_id": t.id})


async def test_reject_needs_reason_and_review(db, team):
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    err = await refused(db, workflow.reject(db, team.member2, t.id, "nope"), InvalidTransition)
    assert "not in review" in err.message
    await workflow.request_review(db, team.member, t.id)
    for blank in ("", "   "):
        kind = InvalidInput if not blank else ValidationFailed  # empty: the schema refuses it
        err = await refused(db, workflow.reject(db, team.member2, t.id, blank), kind)
        assert "reason" in err.message
    await refused(db, workflow.reject(db, team.member, t.id, "mine"), Forbidden)
    log = await tail(db)
    out = await workflow.reject(db, team.member2, t.id, "  add tests  ")
    assert out.status is S.IN_PROGRESS
    entry = await log.one()
    assert_entry(entry, action="rejected", actor=team.member2, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"status": {"old": "review", "new": "in_progress"}},
        "reason": "add tests",
    }


async def test_complete_sets_full_progress(db, team):
    t = await _task(db, team.owner)
    err = await refused(db, workflow.complete(db, team.member, t.id), InvalidTransition)
    assert "pending: it cannot move to completed" in err.message
    await workflow.start(db, team.member, t.id)
    log = await tail(db)
    out = await workflow.complete(db, team.member, t.id)
    assert (out.status, out.progress_percent) == (S.COMPLETED, 100)
    entry = await log.one()
    assert_entry(entry, action="completed", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"]["changes"]["status"] == {"old": "in_progress", "new": "completed"}
    # Reopening for corrections is allowed (completed -> review), as request_review or reopen.
    assert (await workflow.request_review(db, team.member, t.id)).status is S.REVIEW


async def test_review_required_policy(db, team):
    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    err = await refused(db, workflow.complete(db, team.member, t.id), InvalidTransition)
    assert "requires review" in err.message
    assert err.next_step == NextStep("request_review", {"task_id": t.id})
    await workflow.request_review(db, team.member, t.id)
    await refused(db, workflow.complete(db, team.member, t.id), InvalidTransition)
    await refused(db, workflow.complete(db, team.owner, t.id), InvalidTransition)
    await refused(db, workflow.approve(db, team.member, t.id), Forbidden)
    assert (await workflow.approve(db, team.owner, t.id)).status is S.COMPLETED
    # The default project keeps Phase 1's behaviour.
    d = await _task(db, team.owner, project="default")
    await workflow.start(db, team.owner, d.id)
    assert (await workflow.complete(db, team.owner, d.id)).status is S.COMPLETED


async def test_assign_and_unassign(db, team):
    t = await _task(db, team.owner)
    log = await tail(db)
    out = await workflow.assign(db, team.member, t.id, "@nina")
    assert out.assignee == "@nina"
    entry = await log.one()
    assert_entry(entry, action="assigned", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"assignee_id": {"old": None, "new": team.member2.worker_id}},
        "assignee": "@nina",
        "from": None,
    }
    # assign follows delegate's rule: once @nina holds it, only she or an admin reassigns it.
    err = await refused(db, workflow.assign(db, team.member, t.id, None), Forbidden)
    assert "only its assignee or a project admin" in err.message
    out = await workflow.assign(db, team.member2, t.id, None)
    assert out.assignee is None
    for handle in ("@vic", "@olive", "@ghost"):
        await refused(db, workflow.assign(db, team.member, t.id, handle), ValidationFailed)
    await refused(db, workflow.assign(db, team.viewer, t.id, "@mike"), Forbidden)
    await refused(db, workflow.assign(db, team.stranger, t.id, "@mike"), NotFound)


async def test_delegate_own_task_or_as_admin(db, team):
    t = await _task(db, team.owner, assignee="@mike")
    err = await refused(db, workflow.delegate(db, team.member2, t.id, "@nina"), Forbidden)
    assert "only its assignee or a project admin" in err.message
    log = await tail(db)
    out = await workflow.delegate(db, team.member, t.id, "@nina")
    assert out.assignee == "@nina"
    entry = await log.one()
    assert_entry(entry, action="delegated", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"assignee_id": {"old": team.member.worker_id, "new": team.member2.worker_id}},
        "to": "@nina",
        "from": "@mike",
    }
    log = await tail(db)
    await workflow.delegate(db, team.admin, t.id, "@mike")
    entry = await log.one()
    assert (entry["actor_handle"], entry["details"]["from"], entry["details"]["to"]) == (
        "@ada",
        "@nina",
        "@mike",
    )
    await refused(db, workflow.delegate(db, team.member, t.id, "@vic"), ValidationFailed)


async def test_block_and_unblock(db, team):
    t = await _task(db, team.owner)
    log = await tail(db)
    out = await workflow.block(db, team.member, t.id, "waiting on API")
    assert out.status is S.BLOCKED
    entry = await log.one()
    assert_entry(entry, action="blocked", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"status": {"old": "pending", "new": "blocked"}},
        "reason": "waiting on API",
    }
    log = await tail(db)
    again = await workflow.block(db, team.member, t.id)  # a repeat: unchanged, nothing written
    assert (again.status, again.version) == (S.BLOCKED, out.version)
    assert await log.new() == []
    log = await tail(db)
    out = await workflow.unblock(db, team.member, t.id)
    assert out.status is S.PENDING, "unassigned: back to pending"
    assert (await log.one())["action"] == "unblocked"
    err = await refused(db, workflow.unblock(db, team.member, t.id), InvalidTransition)
    assert "not blocked" in err.message
    await workflow.start(db, team.member, t.id)
    await workflow.block(db, team.member, t.id)
    assert (await workflow.unblock(db, team.member, t.id)).status is S.IN_PROGRESS


async def test_due_date_set_and_clear(db, team):
    t = await _task(db, team.owner)
    due = datetime(2027, 1, 2, 3, 4, tzinfo=UTC)
    log = await tail(db)
    out = await workflow.set_due_date(db, team.member, t.id, due)
    assert out.due_date == due
    entry = await log.one()
    assert_entry(entry, action="due_date_set", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {"due_date": {"old": None, "new": "2027-01-02T03:04:00Z"}}
    }
    log = await tail(db)
    out = await workflow.set_due_date(db, team.member, t.id, None)
    assert out.due_date is None
    entry = await log.one()
    assert entry["action"] == "due_date_cleared"
    assert entry["details"]["changes"]["due_date"]["new"] is None
    await refused(db, workflow.set_due_date(db, team.viewer, t.id, due), Forbidden)


VERBS = {
    "start": lambda db, a, t, v: workflow.start(db, a, t, expected_version=v),
    "progress": lambda db, a, t, v: workflow.progress(db, a, t, 5, expected_version=v),
    "request_review": lambda db, a, t, v: workflow.request_review(db, a, t, expected_version=v),
    "approve": lambda db, a, t, v: workflow.approve(db, a, t, expected_version=v),
    "reject": lambda db, a, t, v: workflow.reject(db, a, t, "r", expected_version=v),
    "complete": lambda db, a, t, v: workflow.complete(db, a, t, expected_version=v),
    "assign": lambda db, a, t, v: workflow.assign(db, a, t, "@nina", expected_version=v),
    "delegate": lambda db, a, t, v: workflow.delegate(db, a, t, "@nina", expected_version=v),
    "block": lambda db, a, t, v: workflow.block(db, a, t, expected_version=v),
    "unblock": lambda db, a, t, v: workflow.unblock(db, a, t, expected_version=v),
    "set_due_date": lambda db, a, t, v: workflow.set_due_date(
        db, a, t, datetime(2030, 1, 1, tzinfo=UTC), expected_version=v
    ),
    "edit_task": lambda db, a, t, v: tasks.edit_task(
        db, a, t, EditTask(title="z", expected_version=v)
    ),
    "delete_task": lambda db, a, t, v: tasks.delete_task(db, a, t, expected_version=v),
}
# The status each verb needs, so the only reason to refuse is the version.
READY = {
    "progress": S.IN_PROGRESS,
    "request_review": S.IN_PROGRESS,
    "approve": S.REVIEW,
    "reject": S.REVIEW,
    "complete": S.IN_PROGRESS,
    "unblock": S.BLOCKED,
}


async def test_every_verb_refuses_a_stale_version_then_accepts_the_current(db, team):
    for name, call in VERBS.items():
        t = await _task(db, team.owner, name)
        await _force(db, t.id, READY.get(name, S.PENDING), team.member2.worker_id)
        await sql(db, "UPDATE tasks SET version = 4 WHERE id = :id", id=t.id)
        err = await refused(db, call(db, team.owner, t.id, 3), StaleVersion)
        assert "expected_version=4" in err.message, name
        await call(db, team.owner, t.id, 4)


async def test_claim_next_takes_the_most_urgent_open_leaf(db, team):
    agent = team.member
    low = await _task(db, team.owner, "low", priority=Priority.LOW)
    await _task(db, team.owner, "crit-later", priority=Priority.CRITICAL, due_date="2030-01-01")
    crit_soon = await _task(
        db, team.owner, "crit-soon", priority=Priority.CRITICAL, due_date="2029-01-01"
    )
    parent = await _task(db, team.owner, "parent", priority=Priority.CRITICAL)
    await tasks.add_subtasks(
        db, team.owner, parent.id, [SubtaskSpec(title="leaf", priority=Priority.HIGH)]
    )
    await _task(db, team.owner, "taken", priority=Priority.CRITICAL, assignee="@nina")
    log = await tail(db)
    first = await workflow.claim_next(db, agent)
    assert (first.id, first.status, first.assignee) == (crit_soon.id, S.IN_PROGRESS, "@mike")
    entry = await log.one()
    assert_entry(entry, action="claimed", actor=agent, entity="task", entity_id=crit_soon.id)
    assert entry["details"] == {
        "changes": {
            "status": {"old": "pending", "new": "in_progress"},
            "assignee_id": {"old": None, "new": agent.worker_id},
            "started_at": {"old": None, "new": iso(first.started_at)},
        },
        "claimed_by": "@mike",
        "lease_seconds": 900,  # the project's default lease: until first.lease_expires_at
    }
    order = [(await workflow.claim_next(db, agent, project="web")).title for _ in range(3)]
    assert order == ["crit-later", "leaf", "low"], "parents and assigned tasks are never claimed"
    err = await refused(db, workflow.claim_next(db, agent, project="web"), NotFound)
    assert "no open unassigned task" in err.message
    assert (await task_queries.get_task(db, team.owner, low.id)).task.assignee == "@mike"


async def test_claim_next_filters_and_permissions(db, team):
    await _task(db, team.owner, "py", tags=["python"])
    await _task(db, team.owner, "js", tags=["js"])
    await refused(db, workflow.claim_next(db, team.viewer), NotFound)
    await refused(db, workflow.claim_next(db, team.stranger), NotFound)
    got = await workflow.claim_next(db, team.member, tags=["python", "rust"])
    assert got.title == "py"
    await refused(db, workflow.claim_next(db, team.member, project="default"), NotFound)
    web_id = (await projects.get_project(db, team.owner, "web")).id
    assert (await workflow.claim_next(db, team.member, project=str(web_id))).title == "js"


@pytest.mark.parametrize("verb", ["approve", "reject"])
async def test_nobody_approves_their_own_work_even_as_owner(db, team, verb):
    t = await _task(db, team.owner)
    await workflow.start(db, team.owner, t.id)
    await workflow.request_review(db, team.owner, t.id)
    call = (
        workflow.approve(db, team.owner, t.id)
        if verb == "approve"
        else workflow.reject(db, team.owner, t.id, "meh")
    )
    await refused(db, call, Forbidden)


# The status each verb moves to; unblock picks pending/in_progress by assignee (decision 13).
VERB_TARGET = {
    "start": S.IN_PROGRESS,
    "request_review": S.REVIEW,
    "complete": S.COMPLETED,
    "block": S.BLOCKED,
    "unblock": S.IN_PROGRESS,
}


async def test_every_verb_from_every_status(db, team):
    """25 verb/status pairs: each verb succeeds exactly where Phase 1's table allows its move."""
    calls = {
        "start": workflow.start,
        "request_review": workflow.request_review,
        "complete": workflow.complete,
        "block": workflow.block,
        "unblock": workflow.unblock,
    }
    for verb, status in product(VERB_TARGET, S):
        t = await _task(db, team.owner, f"{verb} from {status}")
        await _force(db, t.id, status, team.member.worker_id)
        target = VERB_TARGET[verb]
        allowed = (str(status), str(target)) in PHASE1 and (
            verb != "unblock" or status is S.BLOCKED
        )
        # Review is left only by a verdict or by its requester (the forced task has none).
        allowed = allowed and status is not S.REVIEW
        repeat = status is target and verb != "unblock"  # idempotent: answered unchanged
        if allowed or repeat:
            out = await calls[verb](db, team.member, t.id)
            assert out.status is target, (verb, status)
        else:
            await refused(db, calls[verb](db, team.member, t.id), InvalidTransition)


async def test_work_times_and_seed_ids_through_a_review_cycle(db, team):
    """started_at is the first start, whatever follows; completed_at lives while completed."""
    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    web = await projects.get_project(db, team.owner, "web")
    t = await _task(db, team.owner)
    assert (t.started_at, t.completed_at) == (None, None)
    assert (t.project_id, t.created_by_id, t.assignee_id) == (web.id, team.owner.worker_id, None)
    started = await workflow.start(db, team.member, t.id)
    assert started.started_at is not None and started.assignee_id == team.member.worker_id
    first = started.started_at
    reviewed = await workflow.request_review(db, team.member, t.id)
    assert (reviewed.started_at, reviewed.completed_at) == (first, None)
    rejected = await workflow.reject(db, team.member2, t.id, "needs tests")
    assert (rejected.status, rejected.started_at) == (S.IN_PROGRESS, first)
    await workflow.request_review(db, team.member, t.id)
    log = await tail(db)
    approved = await workflow.approve(db, team.member2, t.id)
    assert approved.started_at == first
    assert approved.completed_at is not None and approved.completed_at > first
    assert (await log.one())["details"]["changes"]["completed_at"] == {
        "old": None,
        "new": iso(approved.completed_at),
    }
    log = await tail(db)
    reopened = await workflow.request_review(db, team.member, t.id)  # completed -> review
    assert (reopened.status, reopened.started_at, reopened.completed_at) == (S.REVIEW, first, None)
    assert (await log.one())["details"]["changes"]["completed_at"] == {
        "old": iso(approved.completed_at),
        "new": None,
    }
    read = (await task_queries.get_task(db, team.owner, t.id)).task
    assert (read.started_at, read.completed_at) == (first, None)
    assert (read.project_id, read.assignee_id, read.created_by_id, read.parent_task_id) == (
        web.id,
        team.member.worker_id,
        team.owner.worker_id,
        None,
    )


async def test_second_start_and_edits_keep_the_first_start(db, team):
    t = await _task(db, team.owner)
    first = (await workflow.start(db, team.member, t.id)).started_at
    await workflow.block(db, team.member, t.id, "waiting")
    again = await workflow.unblock(db, team.member, t.id)  # back to in_progress
    assert (again.status, again.started_at) == (S.IN_PROGRESS, first)
    done = await tasks.edit_task(db, team.member, t.id, EditTask(status=S.COMPLETED))
    assert done.completed_at is not None and done.started_at == first
    log = await tail(db)
    reopened = await tasks.edit_task(db, team.member, t.id, EditTask(status=S.REVIEW))
    assert (reopened.completed_at, reopened.started_at) == (None, first)
    changes = (await log.one())["details"]["changes"]
    assert changes["completed_at"]["new"] is None and "started_at" not in changes
    # A change that leaves the status alone leaves both stamps alone.
    retitled = await tasks.edit_task(db, team.member, t.id, EditTask(title="renamed"))
    assert (retitled.started_at, retitled.completed_at) == (first, None)


async def test_task_detail_lists_direct_children_and_seed_parent_ids(db, team):
    root = await _task(db, team.owner, "root")
    kids = await tasks.add_subtasks(
        db, team.owner, root.id, [SubtaskSpec(title="a"), SubtaskSpec(title="b")]
    )
    await tasks.add_subtasks(db, team.owner, kids[0].id, [SubtaskSpec(title="grandchild")])
    detail = await task_queries.get_task(db, team.member, root.id)
    assert detail.subtasks == [k.id for k in kids]  # not the grandchild
    assert len(detail.subtree) == 3
    assert all(n.parent_task_id == n.parent_id for n in detail.subtree)
    assert kids[0].parent_task_id == root.id
    leaf = await task_queries.get_task(db, team.member, kids[1].id)
    assert leaf.subtasks == [] and leaf.task.parent_task_id == root.id
    listed = await task_queries.list_tasks(db, team.member, TaskFilter(parent_id=root.id))
    assert [(t.id, t.parent_task_id, t.project_id) for t in listed.items] == [
        (k.id, root.id, root.project_id) for k in kids
    ]
    created = await tasks.create_task(
        db, team.owner, CreateTask(title="with kids", project="web", subtasks=[{"title": "k"}])
    )
    assert created.subtasks == [created.subtree[0].id]


# ---------------------------------------------------------------- rules live on transitions


async def test_unknown_arguments_are_refused_with_the_nearest_name(db, team):
    from taskflow.core.declarations import REGISTRY

    with pytest.raises(InvalidInput) as info:
        REGISTRY["start"].parse({"task_id": 1, "expected_verison": 2})
    assert info.value.problems[0].message == (
        "unknown argument 'expected_verison': did you mean 'expected_version'?"
    )


async def test_a_change_that_changes_nothing_writes_nothing(db, team):
    t = await _task(db, team.owner, assignee="@mike", due_date="2026-12-01")
    log = await tail(db)
    for same in (
        workflow.assign(db, team.member, t.id, "@mike"),
        workflow.delegate(db, team.member, t.id, "@mike"),
        workflow.set_due_date(db, team.member, t.id, t.due_date),
        tasks.edit_task(db, team.member, t.id, EditTask(title=t.title, status="pending")),
    ):
        assert (await same).version == t.version
    assert await log.new() == []


async def test_repeating_an_idempotent_verb_answers_the_task_unchanged(db, team):
    t = await _task(db, team.owner)
    started = await workflow.start(db, team.member, t.id)
    log = await tail(db)
    again = await workflow.start(db, team.member, t.id)
    assert again == started  # same version: nothing happened
    assert await log.new() == []
    err = await refused(db, workflow.start(db, team.member2, t.id), InvalidTransition)
    assert "with someone else" in err.message  # not yours: a repeat only for its holder


async def test_review_is_left_only_by_a_verdict_or_the_requesters_withdrawal(db, team):
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    await workflow.request_review(db, team.member, t.id)
    for attempt in (
        workflow.start(db, team.member2, t.id),
        tasks.edit_task(db, team.member2, t.id, EditTask(status="in_progress")),
        tasks.edit_task(db, team.owner, t.id, EditTask(status="completed")),
        workflow.complete(db, team.member, t.id),
    ):
        err = await refused(db, attempt, InvalidTransition)
        assert "takes it out of review" in err.message
        assert err.next_step is not None and err.next_step.operation in ("approve", "reject")
    log = await tail(db)
    out = await workflow.start(db, team.member, t.id)  # the requester withdraws
    assert out.status is S.IN_PROGRESS and (await log.one())["action"] == "started"


async def test_own_work_counts_everyone_since_the_last_start(db, team):
    """The self-approval path: work the task, then have the review requested by someone else
    with the assignee cleared; the starter still cannot approve it."""
    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    log = await tail(db)
    edited = await tasks.edit_task(db, team.admin, t.id, EditTask(status="review", assignee=None))
    assert (edited.status, edited.assignee) == (S.REVIEW, None)
    assert (await log.one())["action"] == "review_requested"  # an edit asks for review too
    err = await refused(db, workflow.approve(db, team.member, t.id), Forbidden)
    assert "your own work" in err.message
    await refused(db, workflow.approve(db, team.admin, t.id), Forbidden)  # the requester
    assert (await workflow.approve(db, team.member2, t.id)).status is S.COMPLETED


async def test_hints_are_the_moves_this_project_offers(db, team):
    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    err = await refused(
        db, tasks.edit_task(db, team.member, t.id, EditTask(status="pending")), InvalidTransition
    )
    assert "completed" not in err.message and "can move to: review, blocked" in err.message
    assert err.extra["allowed"] == ["request_review", "block"]
    await workflow.request_review(db, team.member, t.id)
    err = await refused(db, workflow.block(db, team.member, t.id), InvalidTransition)
    assert err.extra["allowed"] == ["reject", "approve"]


async def test_reopen_sends_a_completed_task_back_to_review(db, team):
    from taskflow.core.dispatcher import run
    from taskflow.core.handlers.workflow import ReopenTask

    t = await _task(db, team.owner)
    err = await refused(db, run(db, team.member, ReopenTask(task_id=t.id)), InvalidTransition)
    assert err.next_step == NextStep("start", {"task_id": t.id})
    await workflow.start(db, team.member, t.id)
    done = await workflow.complete(db, team.member, t.id)
    log = await tail(db)
    out = await run(db, team.member2, ReopenTask(task_id=t.id))
    assert (out.status, out.completed_at, out.started_at) == (S.REVIEW, None, done.started_at)
    entry = await log.one()
    assert_entry(entry, action="review_requested", actor=team.member2, entity="task")
    assert entry["details"]["reopened"] is True
    # Whoever reopens asks for the review: they cannot approve it themselves.
    await refused(db, workflow.approve(db, team.member2, t.id), Forbidden)
    again = await run(db, team.member2, ReopenTask(task_id=t.id))  # a repeat: unchanged
    assert again.version == out.version

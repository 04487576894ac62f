"""Issue 13, second half: parents finish last, named reviewers, recurrence that recurs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskflow.core import recurrence
from taskflow.core.declarations import REGISTRY
from taskflow.core.dispatcher import run
from taskflow.core.domain import ApprovalPolicy, Role, TaskStatus
from taskflow.core.errors import Forbidden, InvalidInput, InvalidTransition, ValidationFailed
from taskflow.core.handlers.workflow import ReopenTask
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec, TaskFilter, UpdateProject
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.core.conftest import add_to, refused, scalar, sql, tail

S = TaskStatus
DUE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday


async def _task(db, actor, title="t", project="web", **kw):
    return (await tasks.create_task(db, actor, CreateTask(title=title, project=project, **kw))).task


async def _in_review(db, team, reviewer=None):
    t = await _task(db, team.member)
    await workflow.start(db, team.member, t.id)
    out = await workflow.request_review(db, team.member, t.id, reviewer=reviewer)
    return t, out


# ------------------------------------------------------------------ named reviewers


async def test_only_the_named_reviewer_or_an_admin_decides(db, team):
    kim = await add_to(db, team.owner, "web", "@kim", Role.MEMBER)
    t, out = await _in_review(db, team, reviewer="@nina")
    assert out.status is S.REVIEW and out.reviewer == "@nina"
    # The worker may not (their own work), nor another member.
    await refused(db, workflow.approve(db, team.member, t.id), Forbidden, "your own work")
    err = await refused(db, workflow.approve(db, kim, t.id), Forbidden)
    assert "waiting for @nina's review" in err.message and "project admin" in err.message
    await refused(db, workflow.reject(db, kim, t.id, "no"), Forbidden, "@nina")
    log = await tail(db)
    done = await workflow.approve(db, team.member2, t.id, "fine")
    assert done.status is S.COMPLETED and done.reviewer is None  # named for one review
    (entry,) = await log.new()
    assert entry["action"] == "approved"
    assert entry["details"]["changes"]["reviewer_id"] == {
        "old": team.member2.worker_id,
        "new": None,
    }


async def test_a_project_admin_may_decide_a_named_review(db, team):
    t, _ = await _in_review(db, team, reviewer="@nina")
    out = await workflow.reject(db, team.admin, t.id, "needs tests")
    assert out.status is S.IN_PROGRESS and out.reviewer is None
    # Asked again without a name: any other member may decide, as before.
    await workflow.request_review(db, team.member, t.id)
    kim = await add_to(db, team.owner, "web", "@kim", Role.MEMBER)
    assert (await workflow.approve(db, kim, t.id)).status is S.COMPLETED


async def test_the_reviewer_sees_it_in_my_work(db, team):
    t, _ = await _in_review(db, team, reviewer="@nina")
    other = await _task(db, team.member, "not for nina")
    mine = await task_queries.list_tasks(db, team.member2, TaskFilter(), mine=True)
    assert [x.id for x in mine.items] == [t.id]
    assert other.id not in [x.id for x in mine.items]
    # The worker still sees it (assigned), the reviewer no longer once it is decided.
    worker = await task_queries.list_tasks(db, team.member, TaskFilter(), mine=True)
    assert t.id in [x.id for x in worker.items]
    await workflow.approve(db, team.member2, t.id)
    mine = await task_queries.list_tasks(db, team.member2, TaskFilter(), mine=True)
    assert mine.items == []


async def test_a_reviewer_must_be_another_working_member(db, team):
    t = await _task(db, team.member)
    await workflow.start(db, team.member, t.id)
    for handle, why in (
        ("@mike", "worked on task"),  # the worker
        ("@vic", "add them to the project as a member"),  # a viewer
        ("@olive", "add them to the project as a member"),  # not a member
        ("@nobody", "no worker @nobody"),
    ):
        err = await refused(
            db, workflow.request_review(db, team.member, t.id, reviewer=handle), ValidationFailed
        )
        assert why in err.message and err.extra["field"] == "reviewer"


# ------------------------------------------------------------------ parents finish last


async def _parent_with_open_children(db, team):
    parent = await _task(db, team.member, "parent")
    kids = await tasks.add_subtasks(
        db, team.member, parent.id, [SubtaskSpec(title="a"), SubtaskSpec(title="b")]
    )
    for kid in kids:
        await workflow.start(db, team.member, kid.id)
    await workflow.start(db, team.member, parent.id)
    return parent, kids


async def test_a_parent_with_open_subtasks_is_not_completed(db, team):
    parent, (a, b) = await _parent_with_open_children(db, team)
    err = await refused(db, workflow.complete(db, team.member, parent.id), InvalidTransition)
    assert f"#{a.id} 'a' (in_progress)" in err.message and f"#{b.id} 'b'" in err.message
    assert "parents finish last" in err.message
    assert err.extra["open_subtasks"] == [a.id, b.id]
    edit = tasks.edit_task(db, team.member, parent.id, EditTask(status=S.COMPLETED))
    await refused(db, edit, InvalidTransition, "open subtasks")
    # Approving is refused the same way.
    await workflow.request_review(db, team.member, parent.id)
    await refused(db, workflow.approve(db, team.member2, parent.id), InvalidTransition, f"#{a.id}")
    # A grandchild counts too: parents finish after their whole subtree.
    await workflow.complete(db, team.member, a.id)
    (g,) = await tasks.add_subtasks(db, team.member, b.id, [SubtaskSpec(title="g")])
    err = await refused(db, workflow.complete(db, team.member, b.id), InvalidTransition)
    assert err.extra["open_subtasks"] == [g.id]


async def test_the_project_may_allow_open_subtasks(db, team):
    parent, _ = await _parent_with_open_children(db, team)
    allow = UpdateProject(allow_open_subtasks=True)
    await refused(db, projects.update_project(db, team.admin, "web", allow), Forbidden)
    out = await projects.update_project(db, team.owner, "web", allow)
    assert out.allow_open_subtasks is True
    done = await workflow.complete(db, team.member, parent.id)
    assert done.status is S.COMPLETED and done.progress_percent == 100
    # Its rolled-up progress does not read 100% while the subtasks are open.
    detail = await task_queries.get_task(db, team.member, parent.id)
    assert detail.task.rolled_up_progress == 0


async def test_rolled_up_progress_of_a_parent_follows_its_subtasks(db, team):
    parent, (a, b) = await _parent_with_open_children(db, team)
    await workflow.progress(db, team.member, a.id, 50)
    await workflow.complete(db, team.member, b.id)
    assert (await task_queries.get_task(db, team.member, parent.id)).task.rolled_up_progress == 75
    await workflow.complete(db, team.member, a.id)
    await workflow.complete(db, team.member, parent.id)
    assert (await task_queries.get_task(db, team.member, parent.id)).task.rolled_up_progress == 100


# ------------------------------------------------------------------ recurrence


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("daily", "daily"),
        ("Weekly", "weekly"),
        (" monthly ", "monthly"),
        ("every 3 days", "every 3 days"),
        ("every 2 weeks", "every 2 weeks"),
        ("every 1 week", "weekly"),
        ("FREQ=WEEKLY;BYDAY=MO,TH", "RRULE:FREQ=WEEKLY;BYDAY=MO,TH"),
        ("rrule:freq=monthly;bymonthday=-1", "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1"),
    ],
)
def test_accepted_recurrences_are_stored_canonically(given, stored):
    assert recurrence.canonical(given) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "fortnightly",
        "every other tuesday",
        "every 0 days",
        "FREQ=BOGUS",
        "FREQ=MINUTELY",
        "FREQ=DAILY;UNTIL=20261201",  # UNTIL must be UTC
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",  # never occurs
        "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY",
    ],
)
async def test_a_bad_recurrence_is_refused_with_the_accepted_forms(db, team, bad):
    parse = REGISTRY["create_task"].parse
    before = await scalar(db, "SELECT count(*) FROM tasks")
    with pytest.raises(InvalidInput) as info:
        parse({"title": "x", "project": "web", "recurrence": bad})
    problem = info.value.problems[0]
    assert problem.field == "recurrence"
    assert "daily, weekly, monthly, every N days, every N weeks" in problem.message
    assert "RRULE" in problem.message
    t = await _task(db, team.member)
    edit = REGISTRY["edit_task"].parse
    with pytest.raises(InvalidInput, match="every N days"):
        edit({"task_id": t.id, "recurrence": bad})
    assert await scalar(db, "SELECT count(*) FROM tasks") == before + 1


async def _occurrences(db, first_id):
    return await sql(
        db,
        "SELECT id, status, due_date, series_id, recurrence FROM tasks "
        "WHERE id = :id OR series_id = :id ORDER BY id",
        id=first_id,
    )


async def test_a_weekly_task_completed_three_times_makes_three_occurrences(db, team):
    t = await _task(db, team.member, "water plants", recurrence="weekly", due_date=DUE)
    current = t.id
    log = await tail(db)
    for _ in range(3):
        await workflow.start(db, team.member, current)
        await workflow.complete(db, team.member, current)
        current = max(r.id for r in await _occurrences(db, t.id))
    rows = await _occurrences(db, t.id)
    assert len(rows) == 4  # the first, and three occurrences made by completing
    assert [r.due_date for r in rows] == [DUE + timedelta(weeks=n) for n in range(4)]
    assert [r.status for r in rows] == ["completed"] * 3 + ["pending"]
    assert [r.series_id for r in rows] == [None, t.id, t.id, t.id]
    assert {r.recurrence for r in rows} == {"weekly"}
    recurred = [e for e in await log.new() if e["action"] == "recurred"]
    assert [e["entity_id"] for e in recurred] == [r.id for r in rows[1:]]
    assert recurred[0]["details"]["from_task_id"] == t.id
    assert recurred[0]["details"]["due_date"] == (DUE + timedelta(weeks=1)).isoformat()
    nxt = (await task_queries.get_task(db, team.member, rows[-1].id)).task
    assert nxt.title == "water plants" and nxt.assignee == "@mike" and nxt.progress_percent == 0
    assert nxt.recurrence_legacy is False


async def test_approving_a_recurring_task_recurs_with_its_subtasks(db, team):
    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    t = await _task(
        db,
        team.member,
        "monthly report",
        recurrence="monthly",
        due_date=datetime(2027, 1, 31, tzinfo=UTC),
        subtasks=[SubtaskSpec(title="gather", due_date=datetime(2027, 1, 30, tzinfo=UTC))],
    )
    (kid,) = (await task_queries.get_task(db, team.member, t.id)).subtree
    await workflow.start(db, team.member, kid.id)
    await workflow.request_review(db, team.member, kid.id)
    await workflow.approve(db, team.member2, kid.id)
    await workflow.start(db, team.member, t.id)
    await workflow.request_review(db, team.member, t.id, reviewer="@nina")
    await workflow.approve(db, team.member2, t.id)
    (_, nxt) = await _occurrences(db, t.id)
    assert nxt.due_date == datetime(2027, 2, 28, tzinfo=UTC)  # a calendar month
    detail = await task_queries.get_task(db, team.member, nxt.id)
    (copy,) = detail.subtree
    assert copy.title == "gather" and copy.status is S.PENDING and copy.recurrence is None
    assert copy.due_date == datetime(2027, 2, 27, tzinfo=UTC)  # moved by the same step


async def test_the_project_may_leave_subtasks_out_of_the_next_occurrence(db, team):
    await projects.update_project(db, team.admin, "web", UpdateProject(recur_subtasks=False))
    t = await _task(db, team.member, "r", recurrence="daily", subtasks=[SubtaskSpec(title="s")])
    (kid,) = (await task_queries.get_task(db, team.member, t.id)).subtree
    for task_id in (kid.id, t.id):
        await workflow.start(db, team.member, task_id)
        await workflow.complete(db, team.member, task_id)
    (_, nxt) = await _occurrences(db, t.id)
    assert (await task_queries.get_task(db, team.member, nxt.id)).subtree == []
    # No due date: the next is due a step after the completion.
    assert nxt.due_date > datetime.now(UTC) + timedelta(hours=23)


async def test_an_rrule_recurs_until_its_count_runs_out(db, team):
    t = await _task(
        db, team.member, "r", recurrence="FREQ=WEEKLY;BYDAY=MO,TH;COUNT=3", due_date=DUE
    )
    current = t.id
    for _ in range(3):
        await workflow.start(db, team.member, current)
        await workflow.complete(db, team.member, current)
        current = max(r.id for r in await _occurrences(db, t.id))
    rows = await _occurrences(db, t.id)
    assert [r.due_date for r in rows] == [DUE, DUE + timedelta(days=3), DUE + timedelta(days=7)]


async def test_reopening_and_completing_again_does_not_recur_twice(db, team):
    t = await _task(db, team.member, "r", recurrence="daily", due_date=DUE)
    await workflow.start(db, team.member, t.id)
    await workflow.complete(db, team.member, t.id)
    await run(db, team.member, ReopenTask(task_id=t.id))
    await workflow.approve(db, team.member2, t.id)
    assert len(await _occurrences(db, t.id)) == 2


async def test_phase1_free_text_stays_and_does_not_recur(db, team):
    t = await _task(db, team.member, "legacy")
    await sql(db, "UPDATE tasks SET recurrence = 'every other tuesday' WHERE id = :id", id=t.id)
    got = (await task_queries.get_task(db, team.member, t.id)).task
    assert got.recurrence == "every other tuesday" and got.recurrence_legacy is True
    await workflow.start(db, team.member, t.id)
    await workflow.complete(db, team.member, t.id)
    assert len(await _occurrences(db, t.id)) == 1
    # Editing other fields keeps it; setting it again needs a rule.
    out = await tasks.edit_task(db, team.member, t.id, EditTask(title="still legacy"))
    assert out.recurrence == "every other tuesday"

"""Creating, editing and deleting tasks: happy paths, refusals, and the audit entries written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskflow.core.domain import Priority, Role, TaskStatus
from taskflow.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StaleVersion,
    ValidationFailed,
)
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec, UpdateProject
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.core.conftest import add_to, assert_entry, refused, scalar, snapshot, tail


async def _task(db, actor, title="t", **kw):
    return (await tasks.create_task(db, actor, CreateTask(title=title, project="web", **kw))).task


async def test_create_task_defaults_and_audit(db, team):
    log = await tail(db)
    due = datetime(2026, 12, 1, tzinfo=UTC)
    detail = await tasks.create_task(
        db,
        team.member,
        CreateTask(
            title="  Build login  ",
            project="web",
            priority=Priority.HIGH,
            tags=["auth", "ui"],
            due_date="2026-12-01",
            assignee="@nina",
        ),
    )
    t = detail.task
    assert (t.title, t.status, t.priority, t.progress_percent) == (
        "Build login",
        TaskStatus.PENDING,
        Priority.HIGH,
        0,
    )
    assert (t.project, t.assignee, t.created_by, t.tags, t.due_date, t.version) == (
        "web",
        "@nina",
        "@mike",
        ["auth", "ui"],
        due,
        1,
    )
    assert (t.depth, t.rolled_up_progress, detail.subtree) == (0, 0, [])
    entry = await log.one()
    assert_entry(entry, action="created", actor=team.member, entity="task", entity_id=t.id)
    assert entry["task_id"] == t.id
    assert entry["details"] == {
        "new": {
            "title": "Build login",
            "description": "",
            "priority": "high",
            "tags": ["auth", "ui"],
            "due_date": "2026-12-01T00:00:00Z",
            "assignee": "@nina",
        },
        "parent_id": None,
    }


async def test_create_task_records_recurrence(db, owner):
    log = await tail(db)
    t = (await tasks.create_task(db, owner, CreateTask(title="standup", recurrence="daily"))).task
    assert t.recurrence == "daily"
    assert (await log.one())["details"]["new"]["recurrence"] == "daily"


async def test_create_task_goes_to_default_project(db, owner):
    t = (await tasks.create_task(db, owner, CreateTask(title="x"))).task
    assert t.project == "default"


async def test_create_task_refusals(db, team):
    await refused(
        db, tasks.create_task(db, team.stranger, CreateTask(title="x", project="web")), NotFound
    )
    err = await refused(
        db, tasks.create_task(db, team.viewer, CreateTask(title="x", project="web")), Forbidden
    )
    assert "member or higher" in err.message
    for handle in ("@vic", "@olive"):  # a viewer, and someone outside the project
        err = await refused(
            db,
            tasks.create_task(
                db, team.member, CreateTask(title="x", project="web", assignee=handle)
            ),
            ValidationFailed,
        )
        assert "add them to the project" in err.message
    err = await refused(
        db,
        tasks.create_task(db, team.member, CreateTask(title="x", project="web", assignee="@ghost")),
        ValidationFailed,
    )
    assert "no worker @ghost" in err.message


async def test_create_subtask_audits_child_and_parent(db, team):
    parent = await _task(db, team.owner, "parent")
    log = await tail(db)
    child = (
        await tasks.create_task(db, team.member, CreateTask(title="child", parent_id=parent.id))
    ).task
    assert (child.parent_id, child.project) == (parent.id, "web")
    created, added = await log.new()
    assert_entry(created, action="created", actor=team.member, entity="task", entity_id=child.id)
    assert created["details"]["parent_id"] == parent.id
    assert_entry(
        added, action="subtask_added", actor=team.member, entity="task", entity_id=parent.id
    )
    assert added["details"] == {"subtask_ids": [child.id], "titles": ["child"]}


async def test_create_subtask_refusals(db, team):
    parent = await _task(db, team.owner, "parent")
    err = await refused(
        db,
        tasks.create_task(
            db, team.owner, CreateTask(title="c", parent_id=parent.id, project="default")
        ),
        ValidationFailed,
    )
    assert "parent's project" in err.message
    await refused(
        db,
        tasks.create_task(db, team.stranger, CreateTask(title="c", parent_id=parent.id)),
        NotFound,
    )
    await refused(
        db, tasks.create_task(db, team.owner, CreateTask(title="c", parent_id=10**6)), NotFound
    )


async def test_create_task_with_subtasks_is_all_or_nothing(db, team):
    good = CreateTask(title="p", project="web", subtasks=[{"title": "a"}, {"title": "b"}])
    detail = await tasks.create_task(db, team.member, good)
    assert [n.title for n in detail.subtree] == ["a", "b"]
    assert [n.depth for n in detail.subtree] == [1, 1]
    bad = CreateTask(
        title="p2", project="web", subtasks=[{"title": "ok"}, {"title": "x", "assignee": "@vic"}]
    )
    await refused(db, tasks.create_task(db, team.member, bad), ValidationFailed)


async def test_add_subtasks_all_at_once_with_audit(db, team):
    parent = await _task(db, team.owner)
    log = await tail(db)
    specs = [SubtaskSpec(title=f"s{i}", assignee="@mike" if i == 2 else None) for i in range(3)]
    out = await tasks.add_subtasks(db, team.member, parent.id, specs)
    assert [t.title for t in out] == ["s0", "s1", "s2"]
    assert [t.assignee for t in out] == [None, None, "@mike"]
    assert all(t.parent_id == parent.id for t in out)
    entries = await log.new()
    assert [(e["action"], e["entity_id"]) for e in entries] == [
        ("created", out[0].id),
        ("created", out[1].id),
        ("created", out[2].id),
        ("subtask_added", parent.id),
    ]
    assert entries[-1]["details"] == {
        "subtask_ids": [t.id for t in out],
        "titles": ["s0", "s1", "s2"],
    }
    assert all(e["actor_handle"] == "@mike" for e in entries)


async def test_add_subtasks_refusals(db, team):
    parent = await _task(db, team.owner)
    err = await refused(db, tasks.add_subtasks(db, team.member, parent.id, []), InvalidInput)
    assert "subtasks: List should have at least 1 item" in err.message
    one_bad = [SubtaskSpec(title="ok"), SubtaskSpec(title="bad", assignee="@olive")]
    await refused(db, tasks.add_subtasks(db, team.member, parent.id, one_bad), ValidationFailed)
    ok = [SubtaskSpec(title="ok")]
    await refused(db, tasks.add_subtasks(db, team.viewer, parent.id, ok), Forbidden)
    await refused(db, tasks.add_subtasks(db, team.stranger, parent.id, ok), NotFound)
    await refused(db, tasks.add_subtasks(db, team.member, 10**6, ok), NotFound)


async def test_edit_task_records_old_and_new_values(db, team):
    t = await _task(db, team.owner, "old title", tags=["a"])
    log = await tail(db)
    out = await tasks.edit_task(
        db,
        team.member,
        t.id,
        EditTask(
            title="new title", priority=Priority.CRITICAL, tags=["a", "b"], expected_version=1
        ),
    )
    assert (out.title, out.priority, out.tags, out.version) == (
        "new title",
        Priority.CRITICAL,
        ["a", "b"],
        2,
    )
    entry = await log.one()
    assert_entry(entry, action="updated", actor=team.member, entity="task", entity_id=t.id)
    assert entry["details"] == {
        "changes": {
            "title": {"old": "old title", "new": "new title"},
            "priority": {"old": "medium", "new": "critical"},
            "tags": {"old": ["a"], "new": ["a", "b"]},
        }
    }


async def test_edit_task_assignee_change_names_handles(db, team):
    t = await _task(db, team.owner, assignee="@mike")
    log = await tail(db)
    out = await tasks.edit_task(db, team.owner, t.id, EditTask(assignee="@nina"))
    assert out.assignee == "@nina"
    entry = await log.one()
    assert entry["details"]["changes"]["assignee"] == {"old": "@mike", "new": "@nina"}
    log = await tail(db)
    out = await tasks.edit_task(db, team.owner, t.id, EditTask(assignee=None))
    assert out.assignee is None
    assert (await log.one())["details"]["changes"]["assignee"] == {"old": "@nina", "new": None}


async def test_edit_task_nothing_changed_writes_nothing(db, team):
    t = await _task(db, team.owner, "same")
    before = await snapshot(db)
    out = await tasks.edit_task(db, team.member, t.id, EditTask(title="same"))
    assert out.version == 1
    assert await snapshot(db) == before
    err = await refused(db, tasks.edit_task(db, team.member, t.id, EditTask()), ValidationFailed)
    assert "nothing to change" in err.message


async def test_edit_task_same_status_with_other_changes_is_not_a_transition(db, team):
    """A client that sends the whole form back (status unchanged) must not be refused."""
    t = await _task(db, team.owner)
    out = await tasks.edit_task(
        db, team.member, t.id, EditTask(title="renamed", status=TaskStatus.PENDING)
    )
    assert (out.title, out.status) == ("renamed", TaskStatus.PENDING)


@pytest.mark.parametrize("field", ["title", "description", "tags"])
async def test_edit_task_null_for_a_required_field_is_a_clear_error(db, team, field):
    t = await _task(db, team.owner)
    err = await refused(
        db, tasks.edit_task(db, team.member, t.id, EditTask(**{field: None})), ValidationFailed
    )
    assert field in err.message


async def test_edit_task_refusals(db, team):
    t = await _task(db, team.owner)
    await refused(db, tasks.edit_task(db, team.stranger, t.id, EditTask(title="x")), NotFound)
    await refused(db, tasks.edit_task(db, team.viewer, t.id, EditTask(title="x")), Forbidden)
    await refused(db, tasks.edit_task(db, team.member, 10**6, EditTask(title="x")), NotFound)
    err = await refused(
        db,
        tasks.edit_task(db, team.member, t.id, EditTask(title="x", expected_version=2)),
        StaleVersion,
    )
    assert "read it again" in err.message and "expected_version=1" in err.message
    err = await refused(
        db,
        tasks.edit_task(db, team.member, t.id, EditTask(status=TaskStatus.COMPLETED)),
        InvalidTransition,
    )
    assert "can move to: in_progress, blocked" in err.message
    assert err.extra["allowed"] == ["start", "block"] and err.next_step.operation == "start"
    await refused(
        db, tasks.edit_task(db, team.member, t.id, EditTask(assignee="@vic")), ValidationFailed
    )


async def test_reparenting_into_a_cycle_is_refused(db, team):
    root = await _task(db, team.owner, "root", subtasks=[{"title": "child"}])
    child = (await task_queries.get_task(db, team.owner, root.id)).subtree[0]
    grandchild = (
        await tasks.create_task(db, team.owner, CreateTask(title="gc", parent_id=child.id))
    ).task
    for new_parent in (root.id, child.id, grandchild.id):
        err = await refused(
            db, tasks.edit_task(db, team.member, root.id, EditTask(parent_id=new_parent)), Conflict
        )
        assert "cycle" in err.message
    other = (await tasks.create_task(db, team.owner, CreateTask(title="o", project="default"))).task
    err = await refused(
        db,
        tasks.edit_task(db, team.owner, root.id, EditTask(parent_id=other.id)),
        ValidationFailed,
    )
    assert "same project" in err.message
    await refused(
        db, tasks.edit_task(db, team.owner, root.id, EditTask(parent_id=10**6)), ValidationFailed
    )
    # A legal move: the grandchild to the top level, then under a sibling branch.
    log = await tail(db)
    out = await tasks.edit_task(db, team.member, grandchild.id, EditTask(parent_id=None))
    assert out.parent_id is None
    assert (await log.one())["details"] == {
        "changes": {"parent_id": {"old": child.id, "new": None}}
    }
    moved = await tasks.edit_task(db, team.member, root.id, EditTask(parent_id=grandchild.id))
    assert moved.parent_id == grandchild.id


async def test_edit_to_completed_respects_review_required_policy(db, team):
    from taskflow.core.domain import ApprovalPolicy

    await projects.update_project(
        db, team.owner, "web", UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    )
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    err = await refused(
        db,
        tasks.edit_task(db, team.member, t.id, EditTask(status=TaskStatus.COMPLETED)),
        InvalidTransition,
    )
    assert "requires review" in err.message


async def test_edit_to_completed_sets_progress_like_complete(db, team):
    t = await _task(db, team.owner)
    await workflow.start(db, team.member, t.id)
    out = await tasks.edit_task(db, team.member, t.id, EditTask(status=TaskStatus.COMPLETED))
    assert (out.status, out.progress_percent) == (TaskStatus.COMPLETED, 100)


async def test_delete_task_removes_subtree_and_audits_each_node(db, team):
    root = await _task(db, team.owner, "root", subtasks=[{"title": "a"}, {"title": "b"}])
    tree = await task_queries.get_task(db, team.owner, root.id)
    a = tree.subtree[0]
    gc = (await tasks.create_task(db, team.owner, CreateTask(title="gc", parent_id=a.id))).task
    keep = await _task(db, team.owner, "keep")
    await refused(db, tasks.delete_task(db, team.viewer, root.id), Forbidden)
    await refused(db, tasks.delete_task(db, team.stranger, root.id), NotFound)
    await refused(db, tasks.delete_task(db, team.member, root.id, expected_version=9), StaleVersion)
    log = await tail(db)
    deleted = await tasks.delete_task(db, team.member, root.id, expected_version=1)
    assert deleted == [root.id, a.id, gc.id, tree.subtree[1].id]
    entries = await log.new()
    assert sorted(e["entity_id"] for e in entries) == sorted(deleted)
    assert {e["action"] for e in entries} == {"deleted"}
    by_id = {e["entity_id"]: e for e in entries}
    assert by_id[root.id]["details"] == {
        "old": {"title": "root", "status": "pending", "parent_id": None, "assignee": None},
        "with_parent": None,
    }
    assert by_id[gc.id]["details"]["with_parent"] == root.id
    assert await scalar(db, "SELECT array_agg(id) FROM tasks") == [keep.id]
    await refused(db, task_queries.get_task(db, team.owner, root.id), NotFound)


async def test_get_task_visibility(db, team):
    t = await _task(db, team.owner)
    assert (await task_queries.get_task(db, team.viewer, t.id)).task.id == t.id
    err = await refused(db, task_queries.get_task(db, team.stranger, t.id), NotFound)
    assert "not a member" in err.message
    await refused(db, task_queries.get_task(db, team.owner, 10**6), NotFound)


async def test_removed_member_loses_access(db, team):
    t = await _task(db, team.owner)
    await projects.remove_member(db, team.owner, "web", "@mike")
    await refused(db, tasks.edit_task(db, team.member, t.id, EditTask(title="x")), NotFound)
    await add_to(db, team.owner, "web", "@zed", Role.MEMBER)


@pytest.mark.parametrize(
    "bad",
    [
        {"title": "nul\x00byte"},
        {"description": "nul\x00byte"},
        {"tags": ["nul\x00"]},
    ],
)
async def test_text_the_database_cannot_store_is_a_validation_error(db, team, bad):
    """PostgreSQL text cannot hold NUL: the caller gets a 422, not a driver error (a 500)."""
    await refused(
        db,
        tasks.create_task(db, team.member, CreateTask(project="web", **{"title": "x", **bad})),
        ValidationFailed,
    )


async def test_ids_beyond_bigint_are_a_validation_error(db, team):
    await refused(db, task_queries.get_task(db, team.owner, 2**63), InvalidInput)
    await refused(db, tasks.edit_task(db, team.owner, -(2**70), EditTask(title="x")), InvalidInput)

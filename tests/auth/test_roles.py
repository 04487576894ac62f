"""Roles and cross-project attacks through the core services, as authenticated callers.

Humans sign in with real Better Auth JWTs and agents with their API keys; the actors the
Authenticator returns are the ones the services check. A non-member learns nothing (not found,
never forbidden); a member whose role is too low is told which role is needed; every refusal
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.domain import Role, TaskStatus, Via
from taskflow.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from taskflow.core.schemas import (
    AddMember,
    AuditFilter,
    CreateProject,
    CreateTask,
    EditTask,
    RegisterAgent,
    SubtaskSpec,
    TaskFilter,
    UpdateProject,
)
from taskflow.core.services import history, projects, task_queries, tasks, workers, workflow
from tests.auth.conftest import audit_entries, scalar, sign_up

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tests.better_auth import BetterAuthServer


@dataclass
class World:
    """Project `alpha` (owner @olivia, admin @adam, member @worker-bot, viewer @viewer-bot) and
    project `beta` (owner @bea); one task in each. Everyone signed in for real."""

    olivia: Actor
    adam: Actor
    bea: Actor
    member: Actor
    viewer: Actor
    task_a: int
    task_b: int


async def agent(auth: Authenticator, db: Database, registrar: Actor, handle: str) -> Actor:
    issued = await workers.register_agent(db, registrar, RegisterAgent(handle=handle, name=handle))
    return await auth.authenticate(issued.api_key, Via.MCP)


@pytest.fixture
async def world(auth: Authenticator, db: Database, better_auth: BetterAuthServer) -> World:
    olivia = await auth.authenticate(sign_up(better_auth, "olivia"), Via.HTTP)
    adam = await auth.authenticate(sign_up(better_auth, "adam"), Via.HTTP)
    bea = await auth.authenticate(sign_up(better_auth, "bea"), Via.HTTP)
    member = await agent(auth, db, olivia, "@worker-bot")
    viewer = await agent(auth, db, olivia, "@viewer-bot")
    await projects.create_project(db, olivia, CreateProject(slug="alpha", name="Alpha"))
    await projects.create_project(db, bea, CreateProject(slug="beta", name="Beta"))
    for who, role in (("@adam", Role.ADMIN), ("@worker-bot", Role.MEMBER)):
        await projects.add_member(db, olivia, "alpha", AddMember(handle=who, role=role))
    await projects.add_member(
        db, olivia, "alpha", AddMember(handle="@viewer-bot", role=Role.VIEWER)
    )
    task_a = await tasks.create_task(db, olivia, CreateTask(project="alpha", title="Alpha task"))
    task_b = await tasks.create_task(db, bea, CreateTask(project="beta", title="Beta secret"))
    return World(olivia, adam, bea, member, viewer, task_a.task.id, task_b.task.id)


async def snapshot(db: Database) -> tuple[Any, ...]:
    """What a refused call must not change: every task's version and the audit log's length."""
    return (
        await scalar(db, "SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM tasks"),
        await scalar(db, "SELECT count(*) FROM audit_log"),
        await scalar(db, "SELECT count(*) FROM project_members"),
    )


async def refused(db: Database, error: type[Exception], call: Awaitable[Any]) -> str:
    """Run `call`, expect `error` (exactly that class), check nothing changed; return the text."""
    before = await snapshot(db)
    with pytest.raises(error) as caught:
        await call
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert await snapshot(db) == before
    return str(caught.value)


# ---------------------------------------------------------------- viewers


async def test_a_viewer_reads_but_cannot_write(world: World, db: Database) -> None:
    v, task = world.viewer, world.task_a
    assert (await task_queries.get_task(db, v, task)).task.title == "Alpha task"
    assert len((await task_queries.list_tasks(db, v, TaskFilter(project="alpha"))).items) == 1

    writes = [
        tasks.create_task(db, v, CreateTask(project="alpha", title="Sneaky")),
        tasks.edit_task(db, v, task, EditTask(title="Defaced")),
        tasks.add_subtasks(db, v, task, [SubtaskSpec(title="Sub")]),
        tasks.delete_task(db, v, task),
        workflow.start(db, v, task),
        workflow.assign(db, v, task, "@viewer-bot"),
        workflow.block(db, v, task, "because"),
        projects.update_project(db, v, "alpha", UpdateProject(name="Mine now")),
        projects.add_member(db, v, "alpha", AddMember(handle="@bea")),
    ]
    for call in writes:
        message = await refused(db, Forbidden, call)
        assert "you are a viewer of project alpha" in message
    with pytest.raises(NotFound):  # claiming finds nothing a viewer may take
        await workflow.claim_next(db, v, "alpha")


# ---------------------------------------------------------------- non-members


async def test_a_non_member_is_told_not_found_for_reads_and_writes(
    world: World, db: Database
) -> None:
    bea, task = world.bea, world.task_a
    calls = [
        projects.get_project(db, bea, "alpha"),
        projects.list_members(db, bea, "alpha"),
        task_queries.list_tasks(db, bea, TaskFilter(project="alpha")),
        history.list_audit(db, bea, AuditFilter(project="alpha")),
        tasks.create_task(db, bea, CreateTask(project="alpha", title="Intrusion")),
        projects.update_project(db, bea, "alpha", UpdateProject(name="Hijacked")),
        projects.add_member(db, bea, "alpha", AddMember(handle="@bea", role=Role.OWNER)),
        projects.delete_project(db, bea, "alpha"),
    ]
    for call in calls:
        message = await refused(db, NotFound, call)
        assert "project 'alpha' not found, or you are not a member" in message

    for call in (
        task_queries.get_task(db, bea, task),
        tasks.edit_task(db, bea, task, EditTask(title="Defaced")),
        workflow.start(db, bea, task),
    ):
        assert f"task {task} not found" in await refused(db, NotFound, call)

    # ...worded exactly like a project that does not exist, so existence is not revealed
    ghost = await refused(db, NotFound, projects.get_project(db, bea, "ghost"))
    real = await refused(db, NotFound, projects.get_project(db, bea, "alpha"))
    assert real == ghost.replace("ghost", "alpha")
    assert "alpha" not in [p.slug for p in await projects.list_projects(db, bea)]


async def test_a_member_of_one_project_cannot_touch_anothers_task(
    world: World, db: Database
) -> None:
    """@worker-bot is a member of alpha only; task_b is in beta."""
    m, task_b = world.member, world.task_b
    missing = await refused(db, NotFound, task_queries.get_task(db, m, 999_999))
    calls = [
        task_queries.get_task(db, m, task_b),
        tasks.edit_task(db, m, task_b, EditTask(title="Defaced")),
        tasks.delete_task(db, m, task_b),
        tasks.add_subtasks(db, m, task_b, [SubtaskSpec(title="Implant")]),
        tasks.create_task(db, m, CreateTask(title="Implant", parent_id=task_b)),
        workflow.start(db, m, task_b),
        workflow.assign(db, m, task_b, "@worker-bot"),
        workflow.set_due_date(db, m, task_b, None),
        history.list_audit(db, m, AuditFilter(task_id=task_b)),
    ]
    for call in calls:
        message = await refused(db, NotFound, call)
        assert "beta" not in message and "Beta secret" not in message
    # a task of beta is worded exactly like a task that does not exist
    got = await refused(db, NotFound, task_queries.get_task(db, m, task_b))
    assert got == missing.replace("999999", str(task_b))
    page = await task_queries.list_tasks(db, m, TaskFilter())
    assert task_b not in [t.id for t in page.items]
    with pytest.raises(NotFound):
        await workflow.claim_next(db, m, "beta")


async def test_reparenting_under_anothers_task_reveals_nothing(world: World, db: Database) -> None:
    """Moving an alpha task under beta's task must read like moving it under no task at all."""
    m = world.member
    ghost = await refused(
        db, ValidationFailed, tasks.edit_task(db, m, world.task_a, EditTask(parent_id=999_999))
    )
    other = await refused(
        db, ValidationFailed, tasks.edit_task(db, m, world.task_a, EditTask(parent_id=world.task_b))
    )
    assert other == ghost.replace("999999", str(world.task_b))


# ---------------------------------------------------------------- self-approval


async def test_nobody_approves_or_rejects_their_own_work(world: World, db: Database) -> None:
    m, task = world.member, world.task_a
    await workflow.start(db, m, task)  # the agent takes the task
    await workflow.request_review(db, m, task)

    for call in (workflow.approve(db, m, task), workflow.reject(db, m, task, "meh")):
        message = await refused(db, Forbidden, call)
        assert "your own work" in message

    done = await workflow.approve(db, world.adam, task, "looks good")
    assert done.status is TaskStatus.COMPLETED
    [entry] = await audit_entries(db, task_id=task, action="approved")
    assert (entry.actor_handle, entry.actor_type, entry.via) == ("@adam", "human", "http")


# ---------------------------------------------------------------- member management


async def test_an_admin_cannot_make_or_unmake_an_owner(world: World, db: Database) -> None:
    adam = world.adam
    for call in (
        projects.add_member(db, adam, "alpha", AddMember(handle="@bea", role=Role.OWNER)),
        projects.change_role(db, adam, "alpha", AddMember(handle="@adam", role=Role.OWNER)),
        projects.change_role(db, adam, "alpha", AddMember(handle="@olivia", role=Role.MEMBER)),
        projects.remove_member(db, adam, "alpha", "@olivia"),
    ):
        assert "only an owner" in await refused(db, Forbidden, call)
    for call in (  # owners' powers
        projects.update_project(
            db, adam, "alpha", UpdateProject(approval_policy="review_required")
        ),
        projects.delete_project(db, adam, "alpha"),
    ):
        assert "you need to be owner" in await refused(db, Forbidden, call)

    # what an admin may do: manage non-owners, audited as the admin
    await projects.change_role(db, adam, "alpha", AddMember(handle="@viewer-bot", role=Role.MEMBER))
    [entry] = await audit_entries(db, action="role_changed")
    assert (entry.actor_handle, entry.via) == ("@adam", "http")
    assert entry.details["changes"]["role"] == {"old": "viewer", "new": "member"}


async def test_the_last_owner_cannot_leave_or_be_demoted(world: World, db: Database) -> None:
    olivia = world.olivia
    for call in (
        projects.remove_member(db, olivia, "alpha", "@olivia"),
        projects.change_role(db, olivia, "alpha", AddMember(handle="@olivia", role=Role.ADMIN)),
    ):
        assert "last owner of alpha" in await refused(db, Conflict, call)

    await projects.change_role(db, olivia, "alpha", AddMember(handle="@adam", role=Role.OWNER))
    await projects.remove_member(db, olivia, "alpha", "@olivia")
    [entry] = await audit_entries(db, action="member_removed")
    assert (entry.actor_handle, entry.details) == (
        "@olivia",
        {"member": "@olivia", "role": "owner"},
    )
    assert [m.handle for m in await projects.list_members(db, world.adam, "alpha")] == [
        "@adam",
        "@viewer-bot",
        "@worker-bot",
    ]

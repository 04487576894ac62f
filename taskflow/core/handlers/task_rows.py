"""Task rows: locking, reading (a task with its subtree, filtered pages) and writing helpers.

The task and workflow handlers (`taskflow.core.handlers.tasks`, `.workflow`) share these. Every
helper works inside the caller's open transaction (a unit of work's `session`): none opens or
commits one, so a handler's reads, writes and audit entries commit together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from taskflow.core import audit, driver
from taskflow.core.actor import Actor, KeyCaller
from taskflow.core.domain import AuditAction, Role, TaskStatus
from taskflow.core.errors import Conflict, ValidationFailed
from taskflow.core.handlers import task_insert
from taskflow.core.handlers.projects import check_version
from taskflow.core.handlers.task_view import (
    TASK_FIELDS,
    blockers_of,
    blockers_sql,
    decode_cursor,
    encode_cursor,
    not_found,
    task_fields,
    task_out,
)
from taskflow.core.models import Project, ProjectMember, Task, Worker
from taskflow.core.schemas import (
    CreateTask,
    SubtaskSpec,
    TaskOut,
)
from taskflow.core.services.access import (
    check_role,
    project_not_found,
    project_with_role,
    visible,
)
from taskflow.core.uow import UnitOfWork

__all__ = [
    "TASK_FIELDS",
    "blockers_of",
    "blockers_sql",
    "decode_cursor",
    "encode_cursor",
    "not_found",
    "task_fields",
    "task_out",
]

_assignee = aliased(Worker, name="assignee_w")
_creator = aliased(Worker, name="creator_w")
_reviewer = aliased(Worker, name="reviewer_w")

TASK_COLUMNS = (
    Task.id,
    Task.project_id,
    Task.parent_id,
    Task.title,
    Task.description,
    Task.status,
    Task.priority,
    Task.progress_percent,
    Task.tags,
    Task.due_date,
    Task.recurrence,
    Task.assignee_id,
    Task.created_by_id,
    Task.started_at,
    Task.completed_at,
    Task.required_capabilities,
    Task.lease_expires_at,
    Task.version,
    Task.created_at,
    Task.updated_at,
    Project.slug.label("project"),
    _assignee.handle.label("assignee"),
    _creator.handle.label("created_by"),
    _reviewer.handle.label("reviewer"),
)


# Built once: every task write reads its row back through it. A Select is generative (`.where`
# and friends return a copy), so sharing one is safe.
_TASK_SELECT = (
    select(*TASK_COLUMNS, literal_column(blockers_sql("tasks")).label("blockers"))
    .join(Project, Project.id == Task.project_id)
    .outerjoin(_assignee, _assignee.id == Task.assignee_id)
    .join(_creator, _creator.id == Task.created_by_id)
    .outerjoin(_reviewer, _reviewer.id == Task.reviewer_id)
)


def task_select() -> Any:
    """Tasks with the handles and slug a reader wants instead of bare ids."""
    return _TASK_SELECT


# ------------------------------------------------------------------ listing

# ------------------------------------------------------------------ writing

ENTITY = task_insert.ENTITY
DEFAULT_PROJECT = "default"
REPARENT_LOCK = 7270413  # pg_advisory_xact_lock key serialising re-parenting


@dataclass
class Locked:
    """A task row held with FOR UPDATE, with what permission checks need to know."""

    row: Mapping[str, Any]
    role: Role
    approval_policy: str
    allow_open_subtasks: bool = False
    recur_subtasks: bool = True

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.row["status"])


_LOCK = text(
    """
    SELECT t.*, m.role, p.approval_policy, p.slug AS project_slug, p.allow_open_subtasks,
           p.recur_subtasks, p.lease_seconds AS project_lease_seconds,
           ARRAY(SELECT d.blocker_id FROM task_dependencies d JOIN tasks b ON b.id = d.blocker_id
                 WHERE d.task_id = t.id AND b.status <> 'completed'
                 ORDER BY d.blocker_id) AS open_blockers
    FROM tasks t
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN project_members m ON m.project_id = t.project_id AND m.worker_id = :worker_id
    WHERE t.id = :task_id
    FOR UPDATE OF t
    """
)


async def lock_task(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    needed: Role = Role.MEMBER,
    expected_version: int | None = None,
) -> Locked:
    row = (
        (await session.execute(_LOCK, {"task_id": task_id, "worker_id": actor.worker_id}))
        .mappings()
        .first()
    )
    if row is None or row["role"] is None or not visible(actor, row["project_id"]):
        raise not_found(task_id)
    role = check_role(Role(row["role"]), needed, row["project_slug"], row["project_slug"])
    check_version("task", task_id, row["version"], expected_version)
    return Locked(
        row=row,
        role=role,
        approval_policy=row["approval_policy"],
        allow_open_subtasks=row["allow_open_subtasks"],
        recur_subtasks=row["recur_subtasks"],
    )


async def record_task(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    project_id: int,
    action: str,
    details: dict[str, Any],
) -> None:
    """Append a task entry: the task is both the entity and the `task_id` scope, so the entry
    shows in the task's own history and in its project's log."""
    await audit.record(
        session,
        actor,
        entity_type=ENTITY,
        entity_id=task_id,
        project_id=project_id,
        task_id=task_id,
        action=action,
        details=details,
    )


def work_times(locked: Locked, values: Mapping[str, Any]) -> dict[str, Any]:
    """`started_at` and `completed_at` for a status change (none when the status stays).

    Work starts once: the first move to in_progress stamps `started_at`, and review, rejection
    or a second start keep it. `completed_at` is stamped on completion and cleared by any move
    out of completed (completed -> review is Phase 1's reopen). The database's `now()` is the
    transaction time, the same instant as the change's `updated_at`.
    """
    status = values.get("status")
    if status is None or status == locked.row["status"]:
        return {}
    times: dict[str, Any] = {}
    if status == TaskStatus.IN_PROGRESS.value and locked.row["started_at"] is None:
        times["started_at"] = func.now()
    if status == TaskStatus.COMPLETED.value:
        times["completed_at"] = func.now()
    elif locked.row["completed_at"] is not None:
        times["completed_at"] = None
    return times


def lease_end(locked: Locked, values: Mapping[str, Any]) -> dict[str, Any]:
    """A claim's lease ends when the task leaves in_progress or changes hands."""
    if locked.row["lease_expires_at"] is None or "lease_expires_at" in values:
        return {}
    status = values.get("status", locked.row["status"])
    holder = values.get("assignee_id", locked.row["assignee_id"])
    if status == TaskStatus.IN_PROGRESS.value and holder == locked.row["assignee_id"]:
        return {}
    return {"lease_expires_at": None, "lease_seconds": None}


async def apply_change(
    session: AsyncSession,
    actor: Actor,
    locked: Locked,
    values: dict[str, Any],
    action: str,
    details: dict[str, Any],
) -> TaskOut:
    """Update the locked task, bump its version, audit the change, and return the new state.

    A status change also moves the work timestamps (`work_times`); their old and new values
    join the entry's `changes`, so the audit shows when work started and ended. Leaving
    in_progress, or changing hands, ends a claim's lease (`lease_end`), in `changes` too.
    """
    ended = lease_end(locked, values)
    if ended:
        values = {**values, **ended}
        if "changes" in details:
            gone = {"lease_expires_at": {"old": locked.row["lease_expires_at"], "new": None}}
            details = {**details, "changes": {**details["changes"], **gone}}
    times = work_times(locked, values)
    stamped = (
        await session.execute(
            update(Task)
            .where(Task.id == locked.id)
            .values(**values, **times, version=Task.version + 1, updated_at=func.now())
            .returning(Task.started_at, Task.completed_at)
        )
    ).one()
    if times and "changes" in details:
        moved = {name: getattr(stamped, name) for name in times}
        details = {**details, "changes": {**details["changes"], **changes_of(locked, moved)}}
    await record_task(session, actor, locked.id, locked.row["project_id"], action, details)
    return await read_task(session, locked.id)


def changes_of(locked: Locked, new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Old and new value of each field that really changes."""
    return {k: {"old": locked.row[k], "new": v} for k, v in new.items() if locked.row[k] != v}


async def handle_of(session: AsyncSession, worker_id: int | None) -> str | None:
    """The handle of a worker id (audit details name people, not row ids)."""
    if worker_id is None:
        return None
    return await session.scalar(select(Worker.handle).where(Worker.id == worker_id))


async def worker_id_for(
    session: AsyncSession,
    handle: str,
    project_id: int,
    *,
    must_work: bool = True,
    field: str = "assignee",
) -> int:
    """The id of a worker who may be given tasks in this project (active, member or above)."""
    row = (
        await session.execute(
            select(Worker.id, Worker.deactivated_at, ProjectMember.role)
            .outerjoin(
                ProjectMember,
                (ProjectMember.worker_id == Worker.id) & (ProjectMember.project_id == project_id),
            )
            .where(Worker.handle == handle)
        )
    ).first()
    if row is None:
        raise ValidationFailed(f"no worker {handle}: list workers for valid handles", field=field)
    doing = "review tasks" if field == "reviewer" else "be given tasks"
    if row.deactivated_at is not None:
        raise ValidationFailed(
            f"{handle} is deactivated and cannot {doing}: choose another {field} "
            "(or have whoever manages it reactivate it first)",
            field=field,
        )
    if must_work and (row.role is None or row.role == Role.VIEWER.value):
        raise ValidationFailed(
            f"{handle} cannot {doing} here: add them to the project as a member first",
            field=field,
        )
    return int(row.id)


TaskInsert = Callable[..., Awaitable[Mapping[str, Any] | None]]
"""Runs a statement with positional parameters and returns its first row."""


def in_session(session: AsyncSession) -> TaskInsert:
    """A `TaskInsert` running in the session's transaction (handlers holding only a session)."""

    async def run(sql: str, *args: Any) -> Mapping[str, Any] | None:
        return await driver.fetchrow_in(await session.connection(), sql, *args)

    return run


async def _insert_task(
    run: TaskInsert,
    actor: Actor,
    spec: SubtaskSpec,
    parent_id: int | None,
    recurrence: str | None = None,
    *,
    slug: str | None = None,
    project_id: int | None = None,
    assignee_id: int | None = None,
    required_capabilities: list[str] | None = None,
) -> Mapping[str, Any] | None:
    """Insert one task with its `created` entry, if the actor may work in the project named by
    `slug` (else `project_id`): `task_insert.INSERT_TASK`, one round trip. Returns the new row
    (plus `project_slug`), or None when not permitted.

    `run` executes the statement: in the unit's transaction (`UnitOfWork.fetchrow`) or, when it
    is the unit's only write, alone (`UnitOfWork.write_alone`).
    """
    args = task_insert.arguments(
        actor.worker_id,
        spec,
        via=str(actor.via),
        request_id=actor.request_id,
        slug=slug,
        project_id=project_id,
        parent_id=parent_id,
        recurrence=recurrence,
        assignee_id=assignee_id,
        actor_key=actor.key_prefix,
        client_request_id=actor.client_request_id,
        project_ids=actor.scopes.listed(),
        required_capabilities=required_capabilities,
    )
    return await run(task_insert.INSERT_TASK, *args)


async def insert_child(
    session: AsyncSession,
    actor: Actor,
    parent: Locked,
    spec: SubtaskSpec,
    recurrence: str | None = None,
    required_capabilities: list[str] | None = None,
) -> Mapping[str, Any]:
    """A subtask in its parent's project (the parent's lock already proved the project)."""
    project_id = parent.row["project_id"]
    assignee_id = None
    if spec.assignee:
        assignee_id = await worker_id_for(session, spec.assignee, project_id)
    elif parent.row["assignee_id"] == actor.worker_id:
        # The assignee breaking its own task down keeps the parts: another worker's claim
        # cannot take them from under it.
        assignee_id = actor.worker_id
        spec = spec.model_copy(update={"assignee": actor.handle})
    row = await _insert_task(
        in_session(session),
        actor,
        spec,
        parent.id,
        recurrence,
        project_id=project_id,
        assignee_id=assignee_id,
        required_capabilities=required_capabilities,
    )
    if row is None:  # member of the project, but not one who may work in it
        await project_with_role(session, actor, project_id, Role.MEMBER)
        raise not_found(parent.id)
    return row


async def insert_top_level(
    uow: UnitOfWork, actor: Actor, cmd: CreateTask, spec: SubtaskSpec
) -> Mapping[str, Any]:
    """A task at the top of a project named by slug or id ('default' when none is given).

    Without an assignee or subtasks, the task and its entry are the unit's only write, so they
    go alone in one round trip; otherwise the unit's transaction holds them with the rest.
    """
    ref = cmd.project or DEFAULT_PROJECT
    slug, project_id = task_insert.project_ref(ref)
    assignee_id = None
    if spec.assignee:
        # The assignee must be checked against the project: resolve the project first.
        project, _ = await project_with_role(uow.session, actor, ref, Role.MEMBER)
        slug, project_id = None, project.id
        assignee_id = await worker_id_for(uow.session, spec.assignee, project.id)
    alone = not cmd.subtasks and not uow.begun
    row = await _insert_task(
        uow.write_alone if alone else uow.fetchrow,
        actor,
        spec,
        None,
        cmd.recurrence,
        slug=slug,
        project_id=project_id,
        assignee_id=assignee_id,
        required_capabilities=cmd.required_capabilities,
    )
    if row is None:
        await project_with_role(uow.session, actor, ref, Role.MEMBER)  # not found or forbidden
        raise project_not_found(ref)
    return row


async def insert_top_level_by_key(
    uow: UnitOfWork, caller: KeyCaller, cmd: CreateTask, spec: SubtaskSpec
) -> Mapping[str, Any] | None:
    """`insert_top_level` for a caller known only by an API key, as the unit's only write:
    the key is checked in the same statement. None when nothing was written (a key that does
    not open, no such project, no permission)."""
    slug, project_id = task_insert.project_ref(cmd.project or DEFAULT_PROJECT)
    args = task_insert.arguments(
        caller.key_hash,
        spec,
        via=str(caller.via),
        request_id=caller.request_id,
        slug=slug,
        project_id=project_id,
        parent_id=None,
        recurrence=cmd.recurrence,
        assignee_id=None,
        actor_key=caller.key_prefix,
        client_request_id=caller.client_request_id,
        required_capabilities=cmd.required_capabilities,
    )
    return await uow.write_alone(task_insert.INSERT_TASK_BY_KEY, *args)


async def add_children(
    session: AsyncSession, actor: Actor, parent: Locked, specs: list[SubtaskSpec]
) -> list[int]:
    ids = [(await insert_child(session, actor, parent, spec))["id"] for spec in specs]
    await record_task(
        session,
        actor,
        parent.id,
        parent.row["project_id"],
        AuditAction.SUBTASK_ADDED,
        {"subtask_ids": ids, "titles": [s.title for s in specs]},
    )
    return ids


_ANCESTORS = text(
    """
    WITH RECURSIVE up AS (
        SELECT id, parent_id, project_id FROM tasks WHERE id = :start
        UNION ALL
        SELECT t.id, t.parent_id, t.project_id FROM tasks t JOIN up ON t.id = up.parent_id
    )
    SELECT id, project_id FROM up
    """
)


async def check_new_parent(session: AsyncSession, locked: Locked, parent_id: int) -> None:
    """Re-parenting under itself or one of its own descendants would make a cycle."""
    chain = (await session.execute(_ANCESTORS, {"start": parent_id})).all()
    if not chain or chain[0].project_id != locked.row["project_id"]:
        # One message for both: telling them apart would reveal task ids in projects the
        # caller may not be a member of.
        raise ValidationFailed(
            f"parent task {parent_id} does not exist in project {locked.row['project_slug']}: "
            "a parent must be a task of the same project",
            field="parent_id",
        )
    if any(row.id == locked.id for row in chain):
        raise Conflict(
            f"moving task {locked.id} under task {parent_id} would create a cycle "
            f"({parent_id} is {locked.id} or one of its descendants)",
            field="parent_id",
        )


async def read_task(session: AsyncSession, task_id: int) -> TaskOut:
    row = (await session.execute(task_select().where(Task.id == task_id))).mappings().one()
    return task_out(row)

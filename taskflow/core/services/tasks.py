"""Creating, editing and deleting tasks, and the locked-update helper every workflow verb uses.

A change locks the task row, checks role and version, updates it (bumping `version`) and appends
its audit entry, all in one transaction, so no surface can change a task without its entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, insert, literal, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import (
    ApprovalPolicy,
    AuditAction,
    Role,
    TaskStatus,
    check_transition,
    is_number,
)
from taskflow.core.errors import Conflict, InvalidTransition, ValidationFailed
from taskflow.core.models import Project, ProjectMember, Task, Worker
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec, TaskDetail, TaskOut
from taskflow.core.services.access import (
    check_role,
    project_clause,
    project_not_found,
    project_with_role,
)
from taskflow.core.services.projects import check_version
from taskflow.core.services.task_queries import (
    _SUBTREE,
    detail_from_rows,
    not_found,
    task_out,
    task_select,
)

ENTITY = "task"
DEFAULT_PROJECT = "default"
REPARENT_LOCK = 7270413  # pg_advisory_xact_lock key serialising re-parenting


@dataclass
class Locked:
    """A task row held with FOR UPDATE, with what permission checks need to know."""

    row: Mapping[str, Any]
    role: Role
    approval_policy: str

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.row["status"])


_LOCK = text(
    """
    SELECT t.*, m.role, p.approval_policy, p.slug AS project_slug
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
    if row is None or row["role"] is None:
        raise not_found(task_id)
    role = check_role(Role(row["role"]), needed, row["project_slug"], row["project_slug"])
    check_version("task", task_id, row["version"], expected_version)
    return Locked(row=row, role=role, approval_policy=row["approval_policy"])


async def _record(
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
    join the entry's `changes`, so the audit shows when work started and ended.
    """
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
    await _record(session, actor, locked.id, locked.row["project_id"], action, details)
    return await _read(session, locked.id)


def changes_of(locked: Locked, new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Old and new value of each field that really changes."""
    return {k: {"old": locked.row[k], "new": v} for k, v in new.items() if locked.row[k] != v}


def refuse_unreviewed_completion(locked: Locked) -> None:
    """Under a review-required policy only an approval completes a task, whatever the verb."""
    if locked.approval_policy == ApprovalPolicy.REVIEW_REQUIRED:
        raise InvalidTransition(
            f"project {locked.row['project_slug']} requires review: call request_review on "
            f"task {locked.id}, then another member approves it"
        )


async def handle_of(session: AsyncSession, worker_id: int | None) -> str | None:
    """The handle of a worker id (audit details name people, not row ids)."""
    if worker_id is None:
        return None
    return await session.scalar(select(Worker.handle).where(Worker.id == worker_id))


async def worker_id_for(
    session: AsyncSession, handle: str, project_id: int, *, must_work: bool = True
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
        raise ValidationFailed(
            f"no worker {handle}: list workers for valid handles", field="assignee"
        )
    if row.deactivated_at is not None:
        raise ValidationFailed(
            f"{handle} is deactivated and cannot be given tasks: choose another assignee "
            "(or have whoever manages it reactivate it first)",
            field="assignee",
        )
    if must_work and (row.role is None or row.role == Role.VIEWER.value):
        raise ValidationFailed(
            f"{handle} cannot be given tasks here: add them to the project as a member first",
            field="assignee",
        )
    return int(row.id)


WORKING_ROLES = (Role.MEMBER.value, Role.ADMIN.value, Role.OWNER.value)


async def _insert_task(
    session: AsyncSession,
    actor: Actor,
    project: ColumnElement[bool],
    spec: SubtaskSpec,
    parent_id: int | None,
    recurrence: str | None = None,
    *,
    project_id: int | None = None,
) -> Mapping[str, Any] | None:
    """Insert one task, if the actor may work in the project `project` selects, with its
    `created` entry. Returns the new row (plus `project_slug`), or None when not permitted.

    The permission check rides inside the INSERT (INSERT ... SELECT from the caller's working
    projects), saving the round trip of a separate membership query on the hot path.
    """
    assignee_id = None
    if spec.assignee:
        assert project_id is not None, "resolve the project before assigning"
        assignee_id = await worker_id_for(session, spec.assignee, project_id)
    allowed = (
        select(Project.id, Project.slug)
        .join(
            ProjectMember,
            (ProjectMember.project_id == Project.id)
            & (ProjectMember.worker_id == actor.worker_id)
            & ProjectMember.role.in_(WORKING_ROLES),
        )
        .where(project)
        .limit(1)
        .cte("allowed")
    )
    values = {
        "parent_id": parent_id,
        "title": spec.title,
        "description": spec.description,
        "priority": spec.priority.value,
        "tags": spec.tags,
        "due_date": spec.due_date,
        "recurrence": recurrence,
        "assignee_id": assignee_id,
        "created_by_id": actor.worker_id,
    }
    table = Task.__table__
    inserted = (
        insert(table)
        .from_select(
            ["project_id", *values],
            select(allowed.c.id, *(literal(v, table.c[k].type) for k, v in values.items())),
        )
        .returning(*table.c)
        .cte("inserted")
    )
    stmt = select(inserted, allowed.c.slug.label("project_slug")).select_from(
        inserted.join(allowed, true())
    )
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        return None
    await _record(
        session,
        actor,
        row["id"],
        row["project_id"],
        AuditAction.CREATED,
        {
            "new": {
                **spec.model_dump(mode="json"),
                **({"recurrence": recurrence} if recurrence else {}),
            },
            "parent_id": parent_id,
        },
    )
    return row


async def _insert_child(
    session: AsyncSession,
    actor: Actor,
    parent: Locked,
    spec: SubtaskSpec,
    recurrence: str | None = None,
) -> Mapping[str, Any]:
    """A subtask in its parent's project (the parent's lock already proved the project)."""
    project_id = parent.row["project_id"]
    row = await _insert_task(
        session,
        actor,
        Project.id == project_id,
        spec,
        parent.id,
        recurrence,
        project_id=project_id,
    )
    if row is None:  # member of the project, but not one who may work in it
        await project_with_role(session, actor, project_id, Role.MEMBER)
        raise not_found(parent.id)
    return row


async def _insert_top_level(
    session: AsyncSession, actor: Actor, cmd: CreateTask, spec: SubtaskSpec
) -> Mapping[str, Any]:
    """A task at the top of a project named by slug or id ('default' when none is given)."""
    ref = cmd.project or DEFAULT_PROJECT
    project_id = None
    if spec.assignee or is_number(ref):
        # The assignee must be checked against the project, and an all-digit reference may be a
        # slug or an id: resolve the project first (one more round trip, off the hot path).
        project, _ = await project_with_role(session, actor, ref, Role.MEMBER)
        project_id = project.id
    where = project_clause(ref) if project_id is None else Project.id == project_id
    row = await _insert_task(
        session, actor, where, spec, None, cmd.recurrence, project_id=project_id
    )
    if row is None:
        await project_with_role(session, actor, ref, Role.MEMBER)  # says not found or forbidden
        raise project_not_found(ref)
    return row


async def _subtree(session: AsyncSession, actor: Actor, task_id: int) -> TaskDetail:
    rows = (
        (await session.execute(_SUBTREE, {"task_id": task_id, "worker_id": actor.worker_id}))
        .mappings()
        .all()
    )
    return detail_from_rows(rows)


async def _add_children(
    session: AsyncSession, actor: Actor, parent: Locked, specs: list[SubtaskSpec]
) -> list[int]:
    ids = [(await _insert_child(session, actor, parent, spec))["id"] for spec in specs]
    await _record(
        session,
        actor,
        parent.id,
        parent.row["project_id"],
        AuditAction.SUBTASK_ADDED,
        {"subtask_ids": ids, "titles": [s.title for s in specs]},
    )
    return ids


async def create_task(db: Database, actor: Actor, cmd: CreateTask) -> TaskDetail:
    """Create a task (and, optionally, its subtasks) all or nothing."""
    async with db.transaction() as session:
        if cmd.parent_id is not None:
            parent = await lock_task(session, actor, cmd.parent_id)
            project_id = parent.row["project_id"]
            if cmd.project is not None and cmd.project not in (
                parent.row["project_slug"],
                str(project_id),
            ):
                raise ValidationFailed(
                    f"parent task {cmd.parent_id} is in project {parent.row['project_slug']}: "
                    "a subtask lives in its parent's project",
                    field="project",
                )
        spec = SubtaskSpec.model_validate(cmd.model_dump(include=set(SubtaskSpec.model_fields)))
        if cmd.parent_id is not None:
            row = await _insert_child(session, actor, parent, spec, cmd.recurrence)
            await _record(
                session,
                actor,
                cmd.parent_id,
                row["project_id"],
                AuditAction.SUBTASK_ADDED,
                {"subtask_ids": [row["id"]], "titles": [cmd.title]},
            )
        else:
            row = await _insert_top_level(session, actor, cmd, spec)
        task_id = row["id"]
        if not cmd.subtasks:
            # Everything the answer needs is known: skip reading the new row back.
            names = {
                "project": row["project_slug"],
                "assignee": spec.assignee,
                "created_by": actor.handle,
            }
            return detail_from_rows([{**row, **names, "depth": 0}])
        me = await lock_task(session, actor, task_id)
        await _add_children(session, actor, me, cmd.subtasks)
        return await _subtree(session, actor, task_id)


async def add_subtasks(
    db: Database,
    actor: Actor,
    parent_id: int,
    specs: list[SubtaskSpec],
    *,
    expected_version: int | None = None,
) -> list[TaskOut]:
    """Add many subtasks at once; if any is invalid, none is created."""
    if not specs:
        raise ValidationFailed("give at least one subtask", field="subtasks")
    async with db.transaction() as session:
        parent = await lock_task(session, actor, parent_id, expected_version=expected_version)
        ids = await _add_children(session, actor, parent, specs)
        rows = (
            (await session.execute(task_select().where(Task.id.in_(ids)).order_by(Task.id)))
            .mappings()
            .all()
        )
        return [task_out(r) for r in rows]


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


async def _check_new_parent(session: AsyncSession, locked: Locked, parent_id: int) -> None:
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


async def edit_task(db: Database, actor: Actor, task_id: int, cmd: EditTask) -> TaskOut:
    """Change the fields sent; a status change still follows the workflow's transition table."""
    sent = cmd.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not sent:
        raise ValidationFailed("nothing to change: send at least one field")
    for required in ("title", "description", "tags"):
        if required in sent and sent[required] is None:
            raise ValidationFailed(
                f"{required} cannot be null: send a value, or leave it out to keep it",
                field=required,
            )
    async with db.transaction() as session:
        if sent.get("parent_id") is not None:
            # The cycle check reads ancestors another transaction may be moving right now; taking
            # this lock before any row lock runs re-parents one at a time (they are rare), so two
            # moves that are each fine alone cannot together close a loop.
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REPARENT_LOCK})
        locked = await lock_task(session, actor, task_id, expected_version=cmd.expected_version)
        new: dict[str, Any] = {}
        for field in ("title", "description", "tags", "due_date", "recurrence"):
            if field in sent:
                new[field] = sent[field]
        if "priority" in sent and sent["priority"] is not None:
            new["priority"] = sent["priority"].value
        if "status" in sent and sent["status"] not in (None, locked.status):
            check_transition(task_id, locked.status, sent["status"])
            new["status"] = sent["status"].value
            if sent["status"] is TaskStatus.COMPLETED:
                refuse_unreviewed_completion(locked)
                new["progress_percent"] = 100
        if "parent_id" in sent and sent["parent_id"] != locked.row["parent_id"]:
            if sent["parent_id"] is not None:
                await _check_new_parent(session, locked, sent["parent_id"])
            new["parent_id"] = sent["parent_id"]
        if "assignee" in sent:
            new["assignee_id"] = (
                await worker_id_for(session, sent["assignee"], locked.row["project_id"])
                if sent["assignee"]
                else None
            )
        changes = changes_of(locked, new)
        if not changes:
            return await _read(session, task_id)
        if "assignee_id" in changes:
            old_handle = await handle_of(session, locked.row["assignee_id"])
            changes["assignee"] = {"old": old_handle, "new": cmd.assignee}
        return await apply_change(
            session, actor, locked, new, AuditAction.UPDATED, {"changes": changes}
        )


async def _read(session: AsyncSession, task_id: int) -> TaskOut:
    row = (await session.execute(task_select().where(Task.id == task_id))).mappings().one()
    return task_out(row)


async def delete_task(
    db: Database, actor: Actor, task_id: int, expected_version: int | None = None
) -> list[int]:
    """Delete a task and its subtree; every deleted task gets its own `deleted` entry."""
    async with db.transaction() as session:
        locked = await lock_task(session, actor, task_id, expected_version=expected_version)
        tree = await _subtree(session, actor, task_id)
        nodes = [tree.task, *tree.subtree]
        await audit.record_many(
            session,
            actor,
            (
                {
                    "entity_type": ENTITY,
                    "entity_id": node.id,
                    "project_id": locked.row["project_id"],
                    "task_id": node.id,
                    "action": AuditAction.DELETED,
                    "details": {
                        "old": node.model_dump(
                            mode="json", include={"title", "status", "parent_id", "assignee"}
                        ),
                        "with_parent": task_id if node.id != task_id else None,
                    },
                }
                for node in reversed(nodes)
            ),
        )
        await session.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": task_id})
        return [n.id for n in nodes]

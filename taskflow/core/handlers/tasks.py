"""Tasks: create, add subtasks, read, list, edit and delete; commands, handlers, declarations.

Each command carries the task it acts on (`task_id`) or the project (`project`: slug or id) and
refuses unknown fields. A status sent to `edit_task` runs the same transition rules as the
workflow verbs (`taskflow.core.handlers.transitions`), and a new assignee the same assignment
rule, so an edit is never a way round them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import schemas
from taskflow.core.actor import Actor, KeyCaller
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import AuditAction, TaskStatus
from taskflow.core.errors import ValidationFailed
from taskflow.core.handlers import leases, recurring, subtree
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.task_list import READS
from taskflow.core.handlers.task_list import ListTasks as ListTasks
from taskflow.core.handlers.task_rows import ENTITY, REPARENT_LOCK
from taskflow.core.handlers.transitions import check_may_reassign, plan_move
from taskflow.core.models import Task
from taskflow.core.schemas import (
    CreatedTasks,
    CreateTask,
    Model,
    SubtaskSpec,
    TaskDetail,
    TaskOut,
    TaskState,
)
from taskflow.core.uow import UnitOfWork

WORKFLOW = "workflow"  # working a task tree: its subtasks, with the verbs (`workflow.py`)
ADMIN = "admin"  # deletes

BIGINT_MAX = 2**63 - 1
_SPEC_FIELDS = tuple(SubtaskSpec.model_fields)  # read once: a computed property in pydantic 2.11+


def _fits_bigint(value: int) -> int:
    """Ids are bigints; checked here rather than as a schema `maximum`, which would repeat a
    19-digit number in every tool's schema an agent reads."""
    if value > BIGINT_MAX:
        raise ValueError(f"no task has an id above {BIGINT_MAX}")
    return value


TaskId = Annotated[int, Field(ge=1), AfterValidator(_fits_bigint)]
# The version a change is based on (tersely described: it is in almost every task tool).
Version = Annotated[int | None, Field(default=None, ge=1, description="Last version you read")]


class AddSubtasks(Model):
    task_id: TaskId
    subtasks: list[SubtaskSpec] = Field(min_length=1, max_length=200)
    expected_version: Version = None

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        """One subtask may be sent as itself rather than as a list of one."""
        if isinstance(data, dict) and isinstance(data.get("subtasks"), dict):
            return {**data, "subtasks": [data["subtasks"]]}
        return data


def _as_depth(value: int | None) -> int | None:
    """More levels than a database can hold means all of them (kept off the schema, which every
    agent reads, as the bigint check is)."""
    return None if value is None or value >= _INT4_MAX else value


_INT4_MAX = 2**31 - 1


class GetTask(Model):
    task_id: TaskId
    limit: int = Field(default=subtree.DEFAULT_LIMIT, ge=1, le=subtree.MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=200)
    depth: Annotated[
        int | None,
        Field(ge=0, description="Levels below the task; default all"),
        AfterValidator(_as_depth),
    ] = None


class EditTask(schemas.EditTask):
    task_id: TaskId
    expected_version: Version = None


class DeleteTask(Model):
    task_id: TaskId
    expected_version: Version = None


def _spec_of(cmd: CreateTask) -> SubtaskSpec:
    # The command is a SubtaskSpec plus where it goes: its fields are already validated.
    return SubtaskSpec.model_construct(**{name: getattr(cmd, name) for name in _SPEC_FIELDS})


async def _create_task_by_key(
    cmd: CreateTask, uow: UnitOfWork, caller: KeyCaller
) -> TaskDetail | None:
    """`create_task` for a caller known only by an API key, when it is one statement (a task at
    the top of a project, no assignee, no subtasks): the key is checked in that statement."""
    if cmd.parent_id is not None or cmd.assignee or cmd.subtasks:
        return None
    spec = _spec_of(cmd)
    row = await rows.insert_top_level_by_key(uow, caller, cmd, spec)
    if row is None:
        return None
    names = {"project": row["project_slug"], "assignee": None, "reviewer": None}
    return subtree.alone({**row, **names})


@declare(
    CreateTask,
    toolset=READS,
    mcp="create_task",
    rest=Route("POST", "/api/projects/{project}/tasks", 201),
    cli="add",
    mcp_output=CreatedTasks,
    by_key=_create_task_by_key,
)
async def create_task(cmd: CreateTask, uow: UnitOfWork, actor: Actor) -> TaskDetail:
    """Create a task (project slug, default 'default'), optionally under parent_id, with
    subtasks made in the same step: all or nothing."""
    if cmd.parent_id is not None:
        session = uow.session
        parent = await rows.lock_task(session, actor, cmd.parent_id)
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
    spec = _spec_of(cmd)
    if cmd.parent_id is not None:
        row = await rows.insert_child(
            session, actor, parent, spec, cmd.recurrence, cmd.required_capabilities
        )
        await rows.record_task(
            session,
            actor,
            cmd.parent_id,
            row["project_id"],
            AuditAction.SUBTASK_ADDED,
            {"subtask_ids": [row["id"]], "titles": [cmd.title]},
        )
    else:
        row = await rows.insert_top_level(uow, actor, cmd, spec)
    task_id = row["id"]
    if not cmd.subtasks:
        # Everything the answer needs is known: skip reading the new row back.
        inherited = row["assignee_id"] == actor.worker_id and not spec.assignee
        names = {
            "project": row["project_slug"],
            "assignee": actor.handle if inherited else spec.assignee,
            "created_by": actor.handle,
            "reviewer": None,
        }
        return subtree.alone({**row, **names})
    session = uow.session
    me = await rows.lock_task(session, actor, task_id)
    await rows.add_children(session, actor, me, cmd.subtasks)
    # At most 200 subtasks, one level deep: one page holds them all.
    return await subtree.read_page(session, actor, task_id, limit=subtree.MAX_LIMIT)


@declare(
    AddSubtasks,
    toolset=WORKFLOW,
    mcp="add_subtasks",
    rest=Route("POST", "/api/tasks/{task_id}/subtasks", 201, body="subtasks"),
    cli="subtask",
    mcp_output=list[TaskState],
)
async def add_subtasks(cmd: AddSubtasks, uow: UnitOfWork, actor: Actor) -> list[TaskOut]:
    """Add several subtasks under a task at once; if any is invalid, none is created."""
    session = uow.session
    parent = await rows.lock_task(
        session, actor, cmd.task_id, expected_version=cmd.expected_version
    )
    ids = await rows.add_children(session, actor, parent, cmd.subtasks)
    stmt = rows.task_select().where(Task.id.in_(ids)).order_by(Task.id)
    return [rows.task_out(r) for r in (await session.execute(stmt)).mappings().all()]


@declare(
    GetTask,
    toolset=READS,
    read_only=True,
    snapshot=True,
    mcp="get_task",
    rest=Route("GET", "/api/tasks/{task_id}"),
    cli="show",
)
async def get_task(cmd: GetTask, uow: UnitOfWork, actor: Actor) -> TaskDetail:
    """A task with a page of its subtree, depth-first, with rolled_up_progress;
    pass next_cursor back as cursor for more. Read it for the version before a change."""
    await leases.release_expired(uow.session, actor, "get_task", snapshot=True)
    return await subtree.read_page(
        uow.session, actor, cmd.task_id, limit=cmd.limit, cursor=cmd.cursor, depth=cmd.depth
    )


@declare(
    EditTask,
    toolset=READS,
    idempotent=True,
    mcp="update_task",
    rest=Route("PUT", "/api/tasks/{task_id}"),
    cli="edit",
    mcp_output=TaskState,
)
async def edit_task(cmd: EditTask, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Edit a task: only fields sent change; null clears assignee, due_date, parent_id; a
    status runs its verb's rules."""
    sent = cmd.model_dump(exclude_unset=True, exclude={"expected_version", "task_id"})
    if not sent:
        raise ValidationFailed("nothing to change: send at least one field")
    for required in ("title", "description", "tags", "required_capabilities"):
        if required in sent and sent[required] is None:
            raise ValidationFailed(
                f"{required} cannot be null: send a value, or leave it out to keep it",
                field=required,
            )
    session = uow.session
    task_id = cmd.task_id
    if sent.get("parent_id") is not None:
        # The cycle check reads ancestors another transaction may be moving right now; taking
        # this lock before any row lock runs re-parents one at a time (they are rare), so two
        # moves that are each fine alone cannot together close a loop.
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REPARENT_LOCK})
    locked = await rows.lock_task(session, actor, task_id, expected_version=cmd.expected_version)
    new: dict[str, Any] = {}
    for name in ("title", "description", "tags", "due_date", "recurrence", "required_capabilities"):
        if name in sent:
            new[name] = sent[name]
    if sent.get("priority") is not None:
        new["priority"] = sent["priority"].value
    if "parent_id" in sent and sent["parent_id"] != locked.row["parent_id"]:
        if sent["parent_id"] is not None:
            await rows.check_new_parent(session, locked, sent["parent_id"])
        new["parent_id"] = sent["parent_id"]
    if "assignee" in sent:
        new["assignee_id"] = (
            await rows.worker_id_for(session, sent["assignee"], locked.row["project_id"])
            if sent["assignee"]
            else None
        )
        if new["assignee_id"] != locked.row["assignee_id"]:
            check_may_reassign(locked, actor, "reassign")
    action = AuditAction.UPDATED
    status: TaskStatus | None = sent.get("status")
    move = None if status is None else await plan_move(session, actor, locked, status, "edit")
    if move is not None:
        # A status edit writes the entry its verb writes (started, review_requested, ...).
        new = {**move.values, **new}
        action = move.action
    changes = rows.changes_of(locked, new)
    if not changes:  # a change that changes nothing writes nothing and keeps the version
        return await rows.read_task(session, task_id)
    if "assignee_id" in changes:
        old_handle = await rows.handle_of(session, locked.row["assignee_id"])
        new_handle = await rows.handle_of(session, changes["assignee_id"]["new"])
        changes["assignee"] = {"old": old_handle, "new": new_handle}
    details: dict[str, Any] = {"changes": changes}
    if action is not AuditAction.UPDATED:
        details["by_edit"] = True
    answer = await rows.apply_change(session, actor, locked, new, action, details)
    if "status" in changes and answer.status is TaskStatus.COMPLETED:
        # The rule in force is the one just written, if the edit changed it too.
        now = {**locked.row, **{k: c["new"] for k, c in changes.items()}}
        await recurring.next_occurrence(session, actor, replace(locked, row=now))
    return answer


@declare(
    DeleteTask,
    toolset=ADMIN,
    destructive=True,
    mcp="delete_task",
    rest=Route("DELETE", "/api/tasks/{task_id}", 204),
    cli="delete",
)
async def delete_task(cmd: DeleteTask, uow: UnitOfWork, actor: Actor) -> list[int]:
    """Delete a task and its whole subtree; each deleted task gets its own audit entry."""
    session = uow.session
    locked = await rows.lock_task(
        session, actor, cmd.task_id, expected_version=cmd.expected_version
    )
    nodes = await subtree.whole(session, cmd.task_id)
    await uow.record_many(
        actor,
        (
            {
                "entity_type": ENTITY,
                "entity_id": node["id"],
                "project_id": locked.row["project_id"],
                "task_id": node["id"],
                "action": AuditAction.DELETED,
                "details": {
                    "old": {k: node[k] for k in ("title", "status", "parent_id", "assignee")},
                    "with_parent": cmd.task_id if node["id"] != cmd.task_id else None,
                },
            }
            for node in reversed(nodes)
        ),
    )
    await uow.record_many(actor, await _dependencies_dropped(session, [n["id"] for n in nodes]))
    await session.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": cmd.task_id})
    return [n["id"] for n in nodes]


_CROSSING = text(
    """
    SELECT d.task_id, d.blocker_id, t.project_id AS task_project, b.project_id AS blocker_project,
           d.task_id = ANY(CAST(:gone AS bigint[])) AS task_gone
    FROM task_dependencies d
    JOIN tasks t ON t.id = d.task_id
    JOIN tasks b ON b.id = d.blocker_id
    WHERE (d.task_id = ANY(CAST(:gone AS bigint[])))
          <> (d.blocker_id = ANY(CAST(:gone AS bigint[])))
    ORDER BY d.task_id, d.blocker_id
    """
)


async def _dependencies_dropped(session: AsyncSession, gone: list[int]) -> list[dict[str, Any]]:
    """The entries for dependencies a delete takes with it on the tasks that stay: a task no
    longer waits for a deleted blocker (its version moves, as its `blocked_by` changes), a
    blocker no longer blocks a deleted task. Each change to a dependency is audited on both
    sides, even when one side goes."""
    entries: list[dict[str, Any]] = []
    waiting: list[int] = []
    for row in (await session.execute(_CROSSING, {"gone": gone})).mappings():
        if row["task_gone"]:
            stays, project, details = (
                row["blocker_id"],
                row["blocker_project"],
                {"no_longer_blocks": row["task_id"], "deleted": True},
            )
        else:
            stays, project, details = (
                row["task_id"],
                row["task_project"],
                {"unblocked_by": [row["blocker_id"]], "deleted": True},
            )
            waiting.append(stays)
        entries.append(
            {
                "entity_type": ENTITY,
                "entity_id": stays,
                "project_id": project,
                "task_id": stays,
                "action": AuditAction.DEPENDENCY_REMOVED,
                "details": details,
            }
        )
    if waiting:
        await session.execute(
            text("UPDATE tasks SET version = version + 1, updated_at = now() WHERE id = ANY(:ids)"),
            {"ids": sorted(set(waiting))},
        )
    return entries

"""Task tools: find, read, create, edit, and the less common changes grouped in `manage_task`."""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult

from taskflow.core.actor import Actor
from taskflow.core.schemas import (
    CreateTask,
    DueDate,
    EditTask,
    SubtaskSpec,
    TaskDetail,
    TaskFilter,
)
from taskflow.core.services import task_queries, tasks, workflow
from taskflow.mcp_server.outputs import CreatedTasks, TaskPage, TaskResult, TaskState
from taskflow.mcp_server.schema import model_params
from taskflow.mcp_server.toolkit import (
    ADDITIVE,
    DESTRUCTIVE,
    IDEMPOTENT,
    READ_ONLY,
    REQUIRED,
    ExpectedVersion,
    IdempotencyKey,
    Surface,
    TaskId,
    check_action,
    make_tool,
    param,
    require,
    sent,
)

# list_tasks arguments that shape the page rather than filter it.
_PAGING = {"sort", "reverse", "limit", "cursor"}
# A sent filter counts only if it differs from "no filter": `no_assignee=false` is no filter,
# but `has_due_date=false` is one (tasks without a due date).
_FILTER_DEFAULTS = {
    name: field.get_default(call_default_factory=True)
    for name, field in TaskFilter.model_fields.items()
}
_MANAGE_FIELDS = {
    "add_subtasks": {"task_id", "subtasks", "expected_version"},
    "set_due_date": {"task_id", "due_date", "expected_version"},
    "delete": {"task_id", "expected_version"},
}


async def _create(s: Surface, actor: Actor, cmd: CreateTask) -> CreatedTasks:
    return CreatedTasks.of(await tasks.create_task(s.db, actor, cmd))


async def _edit(s: Surface, actor: Actor, task_id: int, cmd: EditTask) -> TaskState:
    return TaskState.of(await tasks.edit_task(s.db, actor, task_id, cmd))


def build(s: Surface) -> list[Tool]:
    """The task tools of one server, bound to its runtime and identity."""

    async def list_tasks(ctx: Context, **kw: Any) -> CallToolResult:
        filtered = any(kw.get(k) != _FILTER_DEFAULTS.get(k) for k in sent() - _PAGING)

        async def op(actor: Actor) -> TaskPage:
            f = TaskFilter(**kw)
            if not filtered:
                f = f.model_copy(update={"assignee": actor.handle})
            return TaskPage.of(await task_queries.list_tasks(s.db, actor, f))

        return await s.read(ctx, op)

    async def get_task(ctx: Context, task_id: TaskId) -> TaskDetail:
        return await s.read(ctx, lambda actor: task_queries.get_task(s.db, actor, task_id))  # type: ignore[return-value]

    async def create_task(ctx: Context, **kw: Any) -> CallToolResult:
        cmd = {k: v for k, v in kw.items() if k != "idempotency_key"}
        return await s.write(
            ctx,
            "create_task",
            kw,
            lambda actor: _create(s, actor, CreateTask(**cmd)),
            CreatedTasks,
        )

    async def update_task(ctx: Context, task_id: int, **kw: Any) -> CallToolResult:
        changes = {k: kw[k] for k in sent() if k in EditTask.model_fields}
        return await s.write(
            ctx,
            "update_task",
            {"task_id": task_id, **kw},
            lambda actor: _edit(s, actor, task_id, EditTask(**changes)),
            TaskState,
        )

    async def manage_task(
        ctx: Context,
        action: Literal["add_subtasks", "set_due_date", "delete"],
        task_id: TaskId,
        subtasks: list[SubtaskSpec] | None = None,
        due_date: DueDate = None,
        expected_version: ExpectedVersion = None,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskResult:
        args = {
            "action": action,
            "task_id": task_id,
            "subtasks": subtasks,
            "due_date": due_date,
            "expected_version": expected_version,
            "idempotency_key": idempotency_key,
        }

        async def op(actor: Actor) -> TaskResult:
            check_action(action, sent(), _MANAGE_FIELDS)
            if action == "add_subtasks":
                specs = require(action, "subtasks", subtasks)
                made = await tasks.add_subtasks(
                    s.db, actor, task_id, specs, expected_version=expected_version
                )
                return TaskResult(action=action, subtasks=[TaskState.of(t) for t in made])
            if action == "set_due_date":
                if "due_date" not in sent():
                    require(action, "due_date (a date, or null to clear it)", None)
                task = await workflow.set_due_date(
                    s.db, actor, task_id, due_date, expected_version=expected_version
                )
                return TaskResult(action=action, task=TaskState.of(task))
            deleted = await tasks.delete_task(s.db, actor, task_id, expected_version)
            return TaskResult(action=action, deleted_ids=deleted)

        return await s.write(ctx, "manage_task", args, op, TaskResult)  # type: ignore[return-value]

    return [
        make_tool(
            list_tasks,
            description=(
                "Find tasks, one page at a time. With no filter: YOUR tasks (assignee = you). "
                "Any filter (project, status, assignee, search, tags, ...) searches every "
                "project you belong to instead. Pass next_cursor back as cursor for more."
            ),
            annotations=READ_ONLY,
            params=model_params(TaskFilter),
            output=TaskPage,
        ),
        make_tool(
            get_task,
            description=(
                "One task with its whole subtree (children, grandchildren, ...), depth-first, "
                "each with rolled_up_progress. Use it before changing a task to read its version."
            ),
            annotations=READ_ONLY,
        ),
        make_tool(
            create_task,
            description=(
                "Create a task (project slug, default 'default'), optionally under parent_id, "
                "and optionally with `subtasks` created in the same step: all or nothing."
            ),
            annotations=ADDITIVE,
            params=[*model_params(CreateTask), param("idempotency_key", IdempotencyKey)],
            output=CreatedTasks,
        ),
        make_tool(
            update_task,
            description=(
                "Edit a task's fields. Only the fields you send change; null clears assignee, "
                "due_date or parent_id. A status change follows the workflow; prefer "
                "start_task, request_review, complete_task, ... for workflow moves."
            ),
            annotations=IDEMPOTENT,
            params=[
                param("task_id", TaskId, REQUIRED),
                *model_params(EditTask),
                param("idempotency_key", IdempotencyKey),
            ],
            output=TaskState,
        ),
        make_tool(
            manage_task,
            description=(
                "Less common task changes, by action: add_subtasks (several children at once, "
                "all or nothing), set_due_date (due_date; null clears), delete (the task and "
                "its whole subtree)."
            ),
            annotations=DESTRUCTIVE,
        ),
    ]

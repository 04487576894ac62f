"""Tasks: create, read (with the whole subtree), list, edit, delete, add subtasks."""

from __future__ import annotations

from taskflow.core.errors import ValidationFailed
from taskflow.core.schemas import (
    CreateTask,
    EditTask,
    Page,
    SubtaskSpec,
    TaskDetail,
    TaskFilter,
    TaskOut,
)
from taskflow.core.services import task_queries, tasks
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("tasks")


@endpoints.get(
    "/api/projects/{project}/tasks",
    operation="list_tasks",
    query=TaskFilter,
    from_path={"project"},
    response=Page[TaskOut],
)
async def list_project_tasks(call: Call) -> Page[TaskOut]:
    """List a project's tasks: Phase 1's filters and sorts, one page at a time.

    Pass the answer's `next_cursor` as `cursor` (with the same filters and sort) for the next
    page; it is null on the last page. Pages stay stable while tasks are being added.
    """
    return await task_queries.list_tasks(call.db, call.actor, call.query)


@endpoints.get("/api/tasks", query=TaskFilter, response=Page[TaskOut])
async def list_tasks(call: Call) -> Page[TaskOut]:
    """List tasks across all your projects (or one, with `project`), one page at a time."""
    return await task_queries.list_tasks(call.db, call.actor, call.query)


@endpoints.post(
    "/api/projects/{project}/tasks",
    operation="create_task",
    body=CreateTask,
    response=TaskDetail,
    status=201,
)
async def create_task(call: Call) -> TaskDetail:
    """Create a task in a project, optionally with subtasks (all or nothing).

    `project` in the body may be omitted; if given it must name the same project as the path.
    With `parent_id` the task becomes a subtask of that task (same project).
    """
    cmd: CreateTask = call.body
    project = call.path["project"]
    if cmd.project is not None and cmd.project != project:
        raise ValidationFailed(
            f"the body names project {cmd.project!r} but the path names {project!r}: "
            "omit project from the body",
            field="project",
        )
    cmd = cmd.model_copy(update={"project": project})
    return await tasks.create_task(call.db, call.actor, cmd)


@endpoints.get("/api/tasks/{task_id}", operation="get_task", response=TaskDetail)
async def get_task(call: Call) -> TaskDetail:
    """Read a task with its whole subtree (depth-first) and rolled-up progress.

    The ETag is the task's own version.
    """
    return await task_queries.get_task(call.db, call.actor, call.path["task_id"])


@endpoints.put(
    "/api/tasks/{task_id}",
    operation="edit_task",
    body=EditTask,
    response=TaskOut,
    precondition=True,
)
async def edit_task(call: Call) -> TaskOut:
    """Edit a task's fields; only the fields you send change (`null` clears).

    A status change still follows the workflow's transition table. Send If-Match (or
    expected_version) to refuse a stale write with 412.
    """
    cmd: EditTask = call.body
    cmd = cmd.model_copy(update={"expected_version": call.version(cmd.expected_version)})
    return await tasks.edit_task(call.db, call.actor, call.path["task_id"], cmd)


@endpoints.delete("/api/tasks/{task_id}", operation="delete_task", precondition=True)
async def delete_task(call: Call) -> None:
    """Delete a task and its whole subtree; every deleted task gets its own audit entry."""
    await tasks.delete_task(call.db, call.actor, call.path["task_id"], call.version())


@endpoints.post(
    "/api/tasks/{task_id}/subtasks",
    operation="add_subtasks",
    body=SubtaskSpec | list[SubtaskSpec],
    response=list[TaskOut],
    status=201,
)
async def add_subtasks(call: Call) -> list[TaskOut]:
    """Add one subtask (an object) or many (an array) under a task, all or nothing."""
    specs = call.body if isinstance(call.body, list) else [call.body]
    return await tasks.add_subtasks(call.db, call.actor, call.path["task_id"], specs)

"""The task endpoints a declaration cannot express, each running a kernel operation.

The task operations are routed from their declarations (`taskflow.core.handlers.tasks`,
`.workflow`); these three keep REST shapes clients already use:
- `GET /api/projects/{project}/tasks`: a second path for `list_tasks` (the project from the path);
- `POST /api/tasks/{task_id}/subtasks`: `add_subtasks` with one subtask (an object) or many (an
  array) as the body, rather than `{"subtasks": [...]}`;
- `PATCH /api/tasks/{task_id}/status`: runs the verb that reaches the status sent.
"""

from __future__ import annotations

from taskflow.core.declarations import operation_for_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import tasks as task_ops
from taskflow.core.handlers import workflow as verbs
from taskflow.core.schemas import Page, SubtaskSpec, TaskFilter, TaskOut
from taskflow.http.bodies import StatusChange
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("tasks")


@endpoints.get(
    "/api/projects/{project}/tasks",
    query=TaskFilter,
    from_path={"project"},
    response=Page[TaskOut],
)
async def list_project_tasks(call: Call) -> Page[TaskOut]:
    """List a project's tasks: Phase 1's filters and sorts, one page at a time.

    The same operation as `GET /api/tasks?project=...`. Pass the answer's `next_cursor` as
    `cursor` (with the same filters and sort) for the next page; it is null on the last page.
    """
    sent = call.query.model_dump(exclude_unset=True)
    command = task_ops.ListTasks(**{**sent, "project": call.path["project"]})
    return await run(call.db, call.actor, command)


@endpoints.post(
    "/api/tasks/{task_id}/subtasks",
    operation="add_subtasks",
    body=SubtaskSpec | list[SubtaskSpec],
    response=list[TaskOut],
    status=201,
    precondition=True,
)
async def add_subtasks(call: Call) -> list[TaskOut]:
    """Add one subtask (an object) or many (an array) under a task, all or nothing."""
    specs = call.body if isinstance(call.body, list) else [call.body]
    arguments = {"task_id": call.path["task_id"], "subtasks": specs}
    command = operation_for_command(task_ops.AddSubtasks).parse(
        {**arguments, "expected_version": call.version()}
    )
    return await run(call.db, call.actor, command)


@endpoints.patch(
    "/api/tasks/{task_id}/status", body=StatusChange, response=TaskOut, precondition=True
)
async def change_status(call: Call) -> TaskOut:
    """Move a task to a status by running the workflow verb that reaches it.

    in_progress runs start, review runs request_review, completed runs complete, blocked runs
    block, pending runs unblock (which resumes an assigned task as in_progress). Moves the
    transition table does not allow get 409 naming the moves that are allowed.
    """
    verb = verbs.VERB_FOR_STATUS[call.body.status]
    command = verb(task_id=call.path["task_id"], expected_version=call.version())
    return await run(call.db, call.actor, command)

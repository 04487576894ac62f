"""Tasks, called the pre-kernel way: `(db, actor, ...)`.

The operations live in `taskflow.core.handlers.tasks` (declared once, run by the dispatcher in
one unit of work). These wrappers keep the CLI's, the importer's and the tests' calls working;
each builds the command and runs it.
"""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import operation_for_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import tasks as ops
from taskflow.core.handlers.task_rows import DEFAULT_PROJECT
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec, TaskDetail, TaskOut

__all__ = ["DEFAULT_PROJECT", "add_subtasks", "create_task", "delete_task", "edit_task"]


async def create_task(db: Database, actor: Actor, cmd: CreateTask) -> TaskDetail:
    return await run(db, actor, cmd)


async def add_subtasks(
    db: Database,
    actor: Actor,
    parent_id: int,
    specs: list[SubtaskSpec],
    *,
    expected_version: int | None = None,
) -> list[TaskOut]:
    arguments = {"task_id": parent_id, "subtasks": specs, "expected_version": expected_version}
    command = operation_for_command(ops.AddSubtasks).parse(arguments)
    return await run(db, actor, command)


async def edit_task(db: Database, actor: Actor, task_id: int, cmd: EditTask) -> TaskOut:
    sent = cmd.model_dump(exclude_unset=True)
    return await run(
        db, actor, operation_for_command(ops.EditTask).parse({"task_id": task_id, **sent})
    )


async def delete_task(
    db: Database, actor: Actor, task_id: int, expected_version: int | None = None
) -> list[int]:
    arguments = {"task_id": task_id, "expected_version": expected_version}
    return await run(db, actor, operation_for_command(ops.DeleteTask).parse(arguments))

"""Reading tasks, called the pre-kernel way: `(db, actor, ...)` (see `handlers.tasks`).

The CLI and the MCP task resource call these; each builds the command and runs it.
"""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import operation_for_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import tasks as ops
from taskflow.core.schemas import Page, TaskDetail, TaskFilter, TaskOut


async def get_task(db: Database, actor: Actor, task_id: int) -> TaskDetail:
    return await run(db, actor, operation_for_command(ops.GetTask).parse({"task_id": task_id}))


async def list_tasks(db: Database, actor: Actor, f: TaskFilter) -> Page[TaskOut]:
    return await run(db, actor, ops.ListTasks(**f.model_dump(exclude_unset=True)))

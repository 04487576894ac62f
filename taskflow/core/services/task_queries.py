"""Reading tasks, called the pre-kernel way: `(db, actor, ...)` (see `handlers.tasks`).

The CLI and the MCP task resource call these; each builds the command and runs it.
"""

from __future__ import annotations

from typing import Any

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import operation_for_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import task_list
from taskflow.core.schemas import Page, TaskDetail, TaskFilter, TaskOut


async def get_task(db: Database, actor: Actor, task_id: int, **page: Any) -> TaskDetail:
    """The task and a page of its subtree; `page` takes `limit`, `cursor` and `depth` as a
    surface received them (refused as `InvalidInput` like any command's arguments)."""
    from taskflow.core.handlers import tasks as ops  # here: a plain listing never loads it

    arguments = {"task_id": task_id, **{k: v for k, v in page.items() if v is not None}}
    return await run(db, actor, operation_for_command(ops.GetTask).parse(arguments))


async def list_tasks(
    db: Database, actor: Actor, f: TaskFilter, *, mine: bool = False
) -> Page[TaskOut]:
    arguments = f.model_dump(exclude_unset=True)
    return await run(db, actor, task_list.ListTasks(**arguments, mine=mine))

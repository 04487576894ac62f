"""The workflow verbs, called the pre-kernel way: `(db, actor, task_id, ...)`.

The operations live in `taskflow.core.handlers.workflow`; these wrappers keep the CLI's and the
tests' calls working, each building the command and running it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import operation_for_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import workflow as ops
from taskflow.core.schemas import TaskOut


async def _verb(
    db: Database, actor: Actor, command: type[ops.TaskVerb], task_id: int, **fields: Any
) -> TaskOut:
    parsed = operation_for_command(command).parse({"task_id": task_id, **fields})
    return await run(db, actor, parsed)


async def start(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    return await _verb(db, actor, ops.Start, task_id, expected_version=expected_version)


async def progress(
    db: Database,
    actor: Actor,
    task_id: int,
    percent: int,
    note: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db,
        actor,
        ops.Progress,
        task_id,
        percent=percent,
        note=note,
        expected_version=expected_version,
    )


async def request_review(
    db: Database,
    actor: Actor,
    task_id: int,
    *,
    reviewer: str | None = None,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.RequestReview, task_id, reviewer=reviewer, expected_version=expected_version
    )


async def approve(
    db: Database,
    actor: Actor,
    task_id: int,
    note: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.Approve, task_id, note=note, expected_version=expected_version
    )


async def reject(
    db: Database,
    actor: Actor,
    task_id: int,
    reason: str,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.Reject, task_id, reason=reason, expected_version=expected_version
    )


async def complete(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    return await _verb(db, actor, ops.Complete, task_id, expected_version=expected_version)


async def assign(
    db: Database,
    actor: Actor,
    task_id: int,
    assignee: str | None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.Assign, task_id, assignee=assignee, expected_version=expected_version
    )


async def delegate(
    db: Database, actor: Actor, task_id: int, to: str, *, expected_version: int | None = None
) -> TaskOut:
    return await _verb(db, actor, ops.Delegate, task_id, to=to, expected_version=expected_version)


async def block(
    db: Database,
    actor: Actor,
    task_id: int,
    reason: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.Block, task_id, reason=reason, expected_version=expected_version
    )


async def unblock(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    return await _verb(db, actor, ops.Unblock, task_id, expected_version=expected_version)


async def set_due_date(
    db: Database,
    actor: Actor,
    task_id: int,
    due: datetime | None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    return await _verb(
        db, actor, ops.SetDueDate, task_id, due_date=due, expected_version=expected_version
    )


async def claim_next(
    db: Database, actor: Actor, project: str | None = None, tags: list[str] | None = None
) -> TaskOut:
    return await run(db, actor, ops.ClaimNext(project=project, tags=tags or []))

"""The workflow verbs: start, progress, review, approve, reject, complete, assign, delegate,
block, unblock, due dates, and claiming the next open task.

Each verb is one transaction: lock the task, check role, version and the transition table, update,
audit. Refusals say what the caller should do instead.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import (
    AuditAction,
    TaskStatus,
    check_progress,
    check_transition,
)
from taskflow.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from taskflow.core.models import AuditEntry, Worker
from taskflow.core.schemas import TaskOut
from taskflow.core.services.tasks import (
    Locked,
    apply_change,
    changes_of,
    handle_of,
    lock_task,
    refuse_unreviewed_completion,
    worker_id_for,
)


def _status_change(locked: Locked, target: TaskStatus) -> dict[str, Any]:
    check_transition(locked.id, locked.status, target)
    return {"status": target.value}


async def _change(
    db: Database,
    actor: Actor,
    task_id: int,
    expected_version: int | None,
    action: AuditAction,
    plan: Any,
    extra: dict[str, Any] | None = None,
) -> TaskOut:
    """Lock, let `plan(locked)` decide the new values (or refuse), then apply and audit."""
    async with db.transaction() as session:
        locked = await lock_task(session, actor, task_id, expected_version=expected_version)
        values = await plan(session, locked) if _is_async(plan) else plan(locked)
        details: dict[str, Any] = {"changes": changes_of(locked, values), **(extra or {})}
        return await apply_change(session, actor, locked, values, action, details)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)


async def _not_own_work(session: Any, locked: Locked, actor: Actor, verb: str) -> None:
    """Own work: the task you hold or the review you asked for (unassigning doesn't launder it)."""
    requester = await session.scalar(
        select(AuditEntry.actor_id)
        .where(
            AuditEntry.entity_type == "task",
            AuditEntry.entity_id == locked.id,
            AuditEntry.action == AuditAction.REVIEW_REQUESTED.value,
        )
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    )
    if actor.worker_id in (locked.row["assignee_id"], requester):
        raise Forbidden(
            f"you cannot {verb} your own work on task {locked.id}: another member must review it"
        )


async def start(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    """Move to in_progress; an unassigned task becomes the starter's (Phase 1 rule)."""

    def plan(locked: Locked) -> dict[str, Any]:
        values = _status_change(locked, TaskStatus.IN_PROGRESS)
        if locked.row["assignee_id"] is None:
            values["assignee_id"] = actor.worker_id
        return values

    return await _change(db, actor, task_id, expected_version, AuditAction.STARTED, plan)


async def progress(
    db: Database,
    actor: Actor,
    task_id: int,
    percent: int,
    note: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    check_progress(percent)

    def plan(locked: Locked) -> dict[str, Any]:
        if locked.status is not TaskStatus.IN_PROGRESS:
            hint = {
                TaskStatus.PENDING: "call start first",
                TaskStatus.COMPLETED: "reopen it with request_review, then start it",
            }.get(locked.status, "start it again")
            raise InvalidTransition(
                f"task {task_id} is {locked.status}: progress needs in_progress ({hint})"
            )
        return {"progress_percent": percent}

    extra = {"progress_percent": percent, **({"note": note} if note else {})}
    return await _change(db, actor, task_id, expected_version, AuditAction.PROGRESSED, plan, extra)


async def request_review(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    return await _change(
        db,
        actor,
        task_id,
        expected_version,
        AuditAction.REVIEW_REQUESTED,
        lambda locked: _status_change(locked, TaskStatus.REVIEW),
    )


def _needs_review(locked: Locked) -> None:
    if locked.status is not TaskStatus.REVIEW:
        raise InvalidTransition(
            f"task {locked.id} is {locked.status}, not in review: request_review first"
        )


async def approve(
    db: Database,
    actor: Actor,
    task_id: int,
    note: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    """Review passed: the task is completed. Nobody approves their own work."""

    async def plan(session: Any, locked: Locked) -> dict[str, Any]:
        _needs_review(locked)
        await _not_own_work(session, locked, actor, "approve")
        return {"status": TaskStatus.COMPLETED.value, "progress_percent": 100}

    extra = {"note": note} if note else {}
    return await _change(db, actor, task_id, expected_version, AuditAction.APPROVED, plan, extra)


async def reject(
    db: Database,
    actor: Actor,
    task_id: int,
    reason: str,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    """Review failed: back to in_progress with the reason on record."""
    if not reason or not reason.strip():
        raise ValidationFailed("a rejection needs a reason the assignee can act on", field="reason")

    async def plan(session: Any, locked: Locked) -> dict[str, Any]:
        _needs_review(locked)
        await _not_own_work(session, locked, actor, "reject")
        return {"status": TaskStatus.IN_PROGRESS.value}

    extra = {"reason": reason.strip()}
    return await _change(db, actor, task_id, expected_version, AuditAction.REJECTED, plan, extra)


async def complete(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    """Mark done. Under a review-required policy only an approval completes a task."""

    def plan(locked: Locked) -> dict[str, Any]:
        refuse_unreviewed_completion(locked)
        values = _status_change(locked, TaskStatus.COMPLETED)
        values["progress_percent"] = 100
        return values

    return await _change(db, actor, task_id, expected_version, AuditAction.COMPLETED, plan)


async def assign(
    db: Database,
    actor: Actor,
    task_id: int,
    assignee: str | None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    """Give the task to a member (or unassign it with None)."""

    async def plan(session: Any, locked: Locked) -> dict[str, Any]:
        if assignee is None:
            return {"assignee_id": None}
        return {"assignee_id": await worker_id_for(session, assignee, locked.row["project_id"])}

    extra = {"assignee": assignee}
    return await _change(db, actor, task_id, expected_version, AuditAction.ASSIGNED, plan, extra)


async def delegate(
    db: Database,
    actor: Actor,
    task_id: int,
    to: str,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    """Hand your task to someone else; admins may delegate anyone's."""

    async def plan(session: Any, locked: Locked) -> dict[str, Any]:
        mine = locked.row["assignee_id"] in (None, actor.worker_id)
        if not mine and locked.role.value not in ("admin", "owner"):
            raise Forbidden(
                f"task {task_id} is assigned to someone else: only its assignee or a project "
                "admin can delegate it"
            )
        extra["from"] = await handle_of(session, locked.row["assignee_id"])
        return {"assignee_id": await worker_id_for(session, to, locked.row["project_id"])}

    extra: dict[str, Any] = {"to": to, "from": None}
    return await _change(db, actor, task_id, expected_version, AuditAction.DELEGATED, plan, extra)


async def block(
    db: Database,
    actor: Actor,
    task_id: int,
    reason: str | None = None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    extra = {"reason": reason} if reason else {}
    return await _change(
        db,
        actor,
        task_id,
        expected_version,
        AuditAction.BLOCKED,
        lambda locked: _status_change(locked, TaskStatus.BLOCKED),
        extra,
    )


async def unblock(
    db: Database, actor: Actor, task_id: int, *, expected_version: int | None = None
) -> TaskOut:
    """Back to work: in_progress when someone has it, pending otherwise."""

    def plan(locked: Locked) -> dict[str, Any]:
        if locked.status is not TaskStatus.BLOCKED:
            raise InvalidTransition(f"task {task_id} is {locked.status}, not blocked")
        target = TaskStatus.IN_PROGRESS if locked.row["assignee_id"] else TaskStatus.PENDING
        return _status_change(locked, target)

    return await _change(db, actor, task_id, expected_version, AuditAction.UNBLOCKED, plan)


async def set_due_date(
    db: Database,
    actor: Actor,
    task_id: int,
    due: datetime | None,
    *,
    expected_version: int | None = None,
) -> TaskOut:
    action = AuditAction.DUE_DATE_SET if due else AuditAction.DUE_DATE_CLEARED
    return await _change(
        db, actor, task_id, expected_version, action, lambda locked: {"due_date": due}
    )


_CLAIM = text(
    """
    SELECT t.id FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.worker_id = :worker_id
    WHERE t.status = 'pending' AND t.assignee_id IS NULL
      AND m.role IN ('member', 'admin', 'owner')
      AND (CAST(:project AS text) IS NULL OR t.project_id = (
            SELECT id FROM projects WHERE slug = CAST(:project AS text)
               OR CAST(id AS text) = CAST(:project AS text)
            ORDER BY slug = CAST(:project AS text) DESC LIMIT 1))
      AND (CAST(:tags AS text[]) IS NULL OR t.tags && CAST(:tags AS text[]))
      AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id)
      AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = :worker_id
                      AND w.deactivated_at IS NOT NULL)
    ORDER BY t.priority_rank, t.due_date NULLS LAST, t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
    """
)


async def _refuse_deactivated_claimer(session: AsyncSession, actor: Actor) -> None:
    """Say why a deactivated worker found nothing (asked only then: claims stay one query)."""
    stmt = select(Worker.deactivated_at).where(Worker.id == actor.worker_id)
    if await session.scalar(stmt) is not None:
        raise Forbidden(f"{actor.handle} is deactivated: it cannot claim tasks")


async def claim_next(
    db: Database, actor: Actor, project: str | None = None, tags: list[str] | None = None
) -> TaskOut:
    """Atomically take the most urgent open leaf task: assign it to yourself and start it.

    `FOR UPDATE SKIP LOCKED` lets any number of agents claim at once with never two winners.
    """
    async with db.transaction() as session:
        task_id = await session.scalar(
            _CLAIM,
            {"worker_id": actor.worker_id, "project": project, "tags": tags or None},
        )
        if task_id is None:
            await _refuse_deactivated_claimer(session, actor)
            where = f" in project {project}" if project else ""
            raise NotFound(
                f"no open unassigned task to claim{where}: create tasks or check back later",
                entity="task",
            )
        locked = await lock_task(session, actor, task_id)
        values = {"status": TaskStatus.IN_PROGRESS.value, "assignee_id": actor.worker_id}
        details = {"changes": changes_of(locked, values), "claimed_by": actor.handle}
        return await apply_change(session, actor, locked, values, AuditAction.CLAIMED, details)

"""Claim leases: how long a claim holds its task, renewing it, and releasing it once it runs out.

A claim (`workflow.claim_next`) sets `lease_expires_at` (now + the claim's `lease_seconds`, else
the project's); progress by the holder, or `heartbeat`, renews it by the same length. Leaving
in_progress or changing hands ends it (`task_rows.lease_end`). A lease that runs out releases
the task (pending, unassigned, progress kept) with one `lease_expired` entry, when something
applies it (`release_expired`): the next claim, `get_task` or `list_tasks`, or the server's
housekeeping. Until then the holder's progress or heartbeat still renews it. When nothing has
expired the check is one short scan of a partial index (`ix_tasks_lease_expires_at`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.domain import AuditAction, TaskStatus
from taskflow.core.errors import InvalidTransition
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.task_rows import ENTITY, Locked
from taskflow.core.handlers.task_view import ANY_LEASE_EXPIRED
from taskflow.core.handlers.transitions import step
from taskflow.core.schemas import TaskOut

RELEASE_BATCH = 100


_ANY_EXPIRED = text(ANY_LEASE_EXPIRED)

# Expired leases of in-progress tasks, each taken once (a lease ends when its task leaves
# in_progress; a stray one must never move a task out of another status). SKIP LOCKED leaves a
# task someone is changing right now (a heartbeat, its holder's progress) to them; the row
# re-checked under its lock must still be expired (READ COMMITTED re-reads it), so a lease
# renewed a moment ago is not released.
_RELEASE = text(
    """
    WITH expired AS (
        SELECT t.id, t.assignee_id, t.status, t.lease_expires_at
        FROM tasks t
        WHERE t.lease_expires_at <= now() AND t.status = 'in_progress'
        ORDER BY t.lease_expires_at
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t
    SET status = 'pending', assignee_id = NULL, lease_expires_at = NULL, lease_seconds = NULL,
        version = t.version + 1, updated_at = now()
    FROM expired e LEFT JOIN workers w ON w.id = e.assignee_id
    WHERE t.id = e.id
    RETURNING t.id, t.project_id, e.assignee_id, w.handle, w.type, e.status,
              e.lease_expires_at
    """
)


async def release_expired(
    session: AsyncSession, actor: Actor, applied_by: str, *, snapshot: bool = False
) -> list[int]:
    """Release tasks whose lease ran out, each with one `lease_expired` entry, in the caller's
    transaction; the ids released.

    The entry's actor is the holder whose lease ran out (via the surface, and with the request
    id, of the call that applied it). In a snapshot (`get_task`) a cheap check runs first and
    the release runs in a savepoint: a lease renewed after the snapshot began is a
    serialization failure there, which only means it is not to be released.
    """
    if snapshot:
        if not await session.scalar(_ANY_EXPIRED):
            return []
        try:
            async with session.begin_nested():
                return await _release(session, actor, applied_by)
        except DBAPIError as exc:
            if str(getattr(exc.orig, "sqlstate", "")) in ("40001", "40P01"):
                return []
            raise
    return await _release(session, actor, applied_by)


async def _release(session: AsyncSession, actor: Actor, applied_by: str) -> list[int]:
    released = (await session.execute(_RELEASE, {"limit": RELEASE_BATCH})).all()
    entries = []
    for row in released:
        holder = (row.assignee_id, row.handle, row.type) if row.handle is not None else None
        changes = {
            "status": {"old": row.status, "new": TaskStatus.PENDING.value},
            "assignee_id": {"old": row.assignee_id, "new": None},
            "lease_expires_at": {"old": row.lease_expires_at, "new": None},
        }
        entries.append(
            {
                "entity_type": ENTITY,
                "entity_id": row.id,
                "project_id": row.project_id,
                "task_id": row.id,
                "action": AuditAction.LEASE_EXPIRED,
                "details": {"changes": changes, "holder": row.handle, "applied_by": applied_by},
                "actor_override": holder,
            }
        )
    if entries:
        await audit.record_many(session, actor, entries)
    return [row.id for row in released]


def lease_values(seconds: int) -> dict[str, Any]:
    """The columns of a lease of `seconds` starting now (the transaction's time)."""
    return {
        "lease_expires_at": func.now() + timedelta(seconds=seconds),
        "lease_seconds": seconds,
    }


_RENEW = text(
    """
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => :secs), lease_seconds = :secs
    WHERE id = :id
    RETURNING lease_expires_at
    """
)


async def renew(
    session: AsyncSession, actor: Actor, locked: Locked, seconds: int | None, via: str
) -> TaskOut:
    """Extend the holder's lease by `seconds` (else the claim's length), with its entry. The
    version stays: a lease is bookkeeping of who holds the task, not its content."""
    secs = seconds or locked.row["lease_seconds"] or locked.row["project_lease_seconds"]
    new = await session.scalar(_RENEW, {"secs": secs, "id": locked.id})
    details = {
        "changes": {"lease_expires_at": {"old": locked.row["lease_expires_at"], "new": new}},
        "lease_seconds": secs,
        "by": via,
    }
    await rows.record_task(
        session, actor, locked.id, locked.row["project_id"], AuditAction.LEASE_RENEWED, details
    )
    return await rows.read_task(session, locked.id)


def check_holds_lease(locked: Locked, actor: Actor) -> None:
    """Only the holder of a claimed, in-progress task renews its lease."""
    if locked.status is not TaskStatus.IN_PROGRESS or locked.row["assignee_id"] != actor.worker_id:
        raise InvalidTransition(
            f"task {locked.id} is not in progress with you: only its holder renews its lease "
            "(claim a task to hold one)",
            next_step=step("get_task", locked.id),
        )
    if locked.row["lease_expires_at"] is None:
        raise InvalidTransition(
            f"task {locked.id} holds no lease (it was started, not claimed): it cannot expire, "
            "so there is nothing to renew"
        )

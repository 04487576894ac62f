"""Due-date reminders: one `due_soon` and one `overdue` event per task and due date.

`remind` runs in the server's housekeeping (every replica's). It takes a transaction-scoped
PostgreSQL advisory lock with `pg_try_advisory_xact_lock`: a replica that does not get it skips
this round, so two replicas never both look, let alone write. Under the lock it finds open
(not completed) tasks due within the horizon (24 hours) or already past due that have no
reminder of that kind for their current due date (`task_reminders`), records each reminder and
appends its audit entry (action `due_soon` or `overdue` on the task, by `@system`, via core),
all in that one transaction. The entries are events like any other: the feed and webhooks see
them. A task first seen already past due gets only `overdue`; a new due date gets new
reminders; the primary key (task, kind, due date) refuses a second of the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from taskflow.core import audit
from taskflow.core.db import Database
from taskflow.core.domain import ReminderKind
from taskflow.core.system import system_actor

HORIZON = timedelta(hours=24)
LOCK_KEY = 7270414  # pg_try_advisory_xact_lock key: one reminder writer at a time
BATCH = 500  # reminders per round at most: a big import's backlog goes out over a few rounds

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")

_DUE = text(
    """
    SELECT t.id, t.project_id, t.title, t.due_date, w.handle AS assignee,
           CASE WHEN t.due_date <= :now THEN 'overdue' ELSE 'due_soon' END AS kind
    FROM tasks t LEFT JOIN workers w ON w.id = t.assignee_id
    WHERE t.due_date IS NOT NULL AND t.status <> 'completed' AND t.due_date < :until
      AND NOT EXISTS (
          SELECT 1 FROM task_reminders r
          WHERE r.task_id = t.id AND r.due_date = t.due_date
            AND r.kind = CASE WHEN t.due_date <= :now THEN 'overdue' ELSE 'due_soon' END)
    ORDER BY t.due_date, t.id
    LIMIT :batch
    """
)

_SENT = text(
    "INSERT INTO task_reminders (task_id, kind, due_date, audit_id) "
    "VALUES (:task_id, :kind, :due_date, :audit_id)"
)


@dataclass(frozen=True, slots=True)
class Reminded:
    """One round: whether this caller held the lock, and what it wrote."""

    ran: bool
    due_soon: int = 0
    overdue: int = 0


async def remind(db: Database, *, now: datetime | None = None) -> Reminded:
    """Write the reminders due now, once each; `ran=False` if another writer holds the lock."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    async with db.transaction() as session:
        if not await session.scalar(_TRY_LOCK, {"key": LOCK_KEY}):
            return Reminded(ran=False)
        rows = (
            await session.execute(_DUE, {"now": moment, "until": moment + HORIZON, "batch": BATCH})
        ).all()
        if not rows:
            return Reminded(ran=True)
        actor = await system_actor(session)
        counts = {ReminderKind.DUE_SOON: 0, ReminderKind.OVERDUE: 0}
        for row in rows:
            kind = ReminderKind(row.kind)
            entry_id = await audit.record(
                session,
                actor,
                entity_type="task",
                entity_id=row.id,
                project_id=row.project_id,
                task_id=row.id,
                action=kind.value,
                details={
                    "title": row.title,
                    "due_date": row.due_date,
                    "assignee": row.assignee,
                },
            )
            await session.execute(
                _SENT,
                {
                    "task_id": row.id,
                    "kind": kind.value,
                    "due_date": row.due_date,
                    "audit_id": entry_id,
                },
            )
            counts[kind] += 1
        return Reminded(
            ran=True, due_soon=counts[ReminderKind.DUE_SOON], overdue=counts[ReminderKind.OVERDUE]
        )

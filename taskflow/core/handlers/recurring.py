"""Recurrence that recurs: completing a recurring task makes its next occurrence.

Whichever path completes a task (complete, approve, `edit_task(status=completed)`, move_task)
calls `next_occurrence` in the same unit of work, after the completion is written:
- the rule is `taskflow.core.recurrence`'s; a legacy (Phase 1 free-text) value never recurs, nor
  does an RRULE whose COUNT or UNTIL has run out;
- the next due date follows the schedule: the rule applied to the completed task's due date
  (to the completion time when it had none), whenever it was completed;
- the new task has the same fields (project, parent, title, description, priority, tags,
  assignee while still able to work there, recurrence), is pending at 0%, and is linked to the
  series (`series_id`: the first task's id); with its project's `recur_subtasks` (the default)
  its whole subtree is copied too, open, each copy's due date moved by the same step and
  without a recurrence of its own (the parent's rule drives the series);
- audit: each new task's `created` entry (and `subtask_added` on copied parents) as every
  insert writes them, then one `recurred` entry on the new task naming where it came from;
- an occurrence of the series with that due date already there (a reopened task completed
  again) is not made twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import recurrence
from taskflow.core.actor import Actor
from taskflow.core.domain import AuditAction, Priority, Role
from taskflow.core.errors import ValidationFailed
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.task_rows import Locked
from taskflow.core.models import ProjectMember, Task, Worker
from taskflow.core.schemas import SubtaskSpec

_SUBTREE = text(
    """
    WITH RECURSIVE sub AS (
        SELECT c.id FROM tasks c WHERE c.parent_id = :task_id
        UNION ALL
        SELECT c.id FROM sub
        CROSS JOIN LATERAL (SELECT c.id FROM tasks c WHERE c.parent_id = sub.id OFFSET 0) c
    )
    SELECT t.id, t.parent_id, t.title, t.description, t.priority, t.tags, t.due_date,
           t.assignee_id
    FROM sub JOIN tasks t ON t.id = sub.id
    ORDER BY t.id
    """
)


async def _still_works_here(session: AsyncSession, worker_id: int | None, project_id: int) -> bool:
    """Whether the assignee may still be given tasks in the project (active, member or above)."""
    if worker_id is None:
        return False
    role = await session.scalar(
        select(ProjectMember.role)
        .join(Worker, Worker.id == ProjectMember.worker_id)
        .where(
            ProjectMember.project_id == project_id,
            ProjectMember.worker_id == worker_id,
            Worker.deactivated_at.is_(None),
        )
    )
    return role is not None and role != Role.VIEWER.value


async def _insert(
    session: AsyncSession,
    actor: Actor,
    row: Any,
    *,
    parent_id: int | None,
    project_id: int,
    due: datetime | None,
    rule: str | None,
    assignee_ok: dict[int | None, bool],
) -> int:
    assignee = row["assignee_id"]
    if assignee not in assignee_ok:
        assignee_ok[assignee] = await _still_works_here(session, assignee, project_id)
    spec = SubtaskSpec.model_construct(
        title=row["title"],
        description=row["description"],
        priority=Priority(row["priority"]),
        tags=list(row["tags"]),
        due_date=due,
        assignee=None,
    )
    made = await rows._insert_task(
        rows.in_session(session),
        actor,
        spec,
        parent_id,
        rule,
        project_id=project_id,
        assignee_id=assignee if assignee_ok[assignee] else None,
    )
    if made is None:  # the lock proved the actor works here; this cannot happen
        raise ValidationFailed(f"cannot create the next occurrence of task {row['id']}")
    return int(made["id"])


async def _series_start(session: AsyncSession, series_id: int, fallback: datetime) -> datetime:
    start = await session.scalar(select(Task.due_date).where(Task.id == series_id))
    return start or fallback


async def next_occurrence(session: AsyncSession, actor: Actor, locked: Locked) -> int | None:
    """Make the next occurrence of the just completed `locked` task; its id, or None."""
    rule = recurrence.rule_of(locked.row["recurrence"])
    if rule is None:
        return None
    series_id = locked.row["series_id"] or locked.id
    due = locked.row["due_date"]
    base = due or datetime.now(UTC)
    start = await _series_start(session, series_id, base) if rule.rrule_text else None
    next_due = rule.next_after(base, start)
    if next_due is None:
        return None  # COUNT or UNTIL has run out: the series ends here
    there = await session.scalar(
        select(Task.id).where(
            (Task.series_id == series_id) | (Task.id == series_id), Task.due_date == next_due
        )
    )
    if there is not None and there != locked.id:
        return None
    project_id = locked.row["project_id"]
    assignee_ok: dict[int | None, bool] = {}
    new_id = await _insert(
        session,
        actor,
        locked.row,
        parent_id=locked.row["parent_id"],
        project_id=project_id,
        due=next_due,
        rule=rule.text,
        assignee_ok=assignee_ok,
    )
    await session.execute(
        text("UPDATE tasks SET series_id = :s WHERE id = :id"), {"s": series_id, "id": new_id}
    )
    copied: list[int] = []
    if locked.recur_subtasks:
        copied = await _copy_subtree(
            session, actor, locked.id, new_id, project_id, next_due - base, assignee_ok
        )
    await rows.record_task(
        session,
        actor,
        new_id,
        project_id,
        AuditAction.RECURRED,
        {
            "from_task_id": locked.id,
            "series_id": series_id,
            "recurrence": rule.text,
            "due_date": next_due.isoformat(),
            "copied_subtasks": copied,
        },
    )
    return new_id


async def _copy_subtree(
    session: AsyncSession,
    actor: Actor,
    old_root: int,
    new_root: int,
    project_id: int,
    shift: Any,
    assignee_ok: dict[int | None, bool],
) -> list[int]:
    """Copy every descendant of `old_root` under `new_root`, parents before children."""
    found = (await session.execute(_SUBTREE, {"task_id": old_root})).mappings().all()
    children: dict[int, list[Any]] = defaultdict(list)
    for r in found:
        children[r["parent_id"]].append(r)
    copied: list[int] = []
    todo = [(old_root, new_root)]
    while todo:
        old_parent, new_parent = todo.pop(0)
        kids = children[old_parent]
        if not kids:
            continue
        ids = []
        for kid in kids:
            due = kid["due_date"] + shift if kid["due_date"] is not None else None
            kid_id = await _insert(
                session,
                actor,
                kid,
                parent_id=new_parent,
                project_id=project_id,
                due=due,
                rule=None,
                assignee_ok=assignee_ok,
            )
            ids.append(kid_id)
            todo.append((kid["id"], kid_id))
        copied.extend(ids)
        await rows.record_task(
            session,
            actor,
            new_parent,
            project_id,
            AuditAction.SUBTASK_ADDED,
            {"subtask_ids": ids, "titles": [k["title"] for k in kids], "recurred": True},
        )
    return copied

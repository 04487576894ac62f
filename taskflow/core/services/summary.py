"""Counts for `taskflow status`: one grouped query over the caller's projects (your work:
assigned to you, and open tasks whose comments mention you)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import TaskStatus


class StatusSummary(BaseModel):
    user: str
    projects: int
    tasks: int
    by_status: dict[TaskStatus, int] = Field(description="Every status, 0 when none")
    overdue: int = Field(description="Open tasks whose due date has passed")
    mine_open: int = Field(description="Open tasks assigned to the caller")
    mentioned_open: int = Field(
        default=0, description="Open tasks with a comment mentioning the caller"
    )


_COUNTS = text(
    """
    SELECT t.status,
           count(*) AS n,
           count(*) FILTER (WHERE t.due_date < now() AND t.status <> 'completed') AS overdue,
           count(*) FILTER (WHERE t.assignee_id = :me AND t.status <> 'completed') AS mine,
           count(*) FILTER (WHERE t.status <> 'completed' AND EXISTS (
               SELECT 1 FROM comments c WHERE c.task_id = t.id AND c.mentions @> ARRAY[:me]
           )) AS mentioned
    FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.worker_id = :me
    GROUP BY t.status
    """
)
_PROJECTS = text("SELECT count(*) FROM project_members WHERE worker_id = :me")


async def status_summary(db: Database, actor: Actor) -> StatusSummary:
    """How much work is where, in the projects the caller belongs to."""
    async with db.transaction() as session:
        rows = (await session.execute(_COUNTS, {"me": actor.worker_id})).all()
        projects = int(await session.scalar(_PROJECTS, {"me": actor.worker_id}) or 0)
    by_status = {status: 0 for status in TaskStatus}
    for row in rows:
        by_status[TaskStatus(row.status)] = int(row.n)
    return StatusSummary(
        user=actor.handle,
        projects=projects,
        tasks=sum(by_status.values()),
        by_status=by_status,
        overdue=sum(int(r.overdue) for r in rows),
        mine_open=sum(int(r.mine) for r in rows),
        mentioned_open=sum(int(r.mentioned) for r in rows),
    )

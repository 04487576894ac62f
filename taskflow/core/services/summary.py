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
    to_review: int = Field(default=0, description="Tasks in review that name the caller")
    mentioned_open: int = Field(
        default=0, description="Open tasks with a comment mentioning the caller"
    )


_COUNTS = text(
    """
    SELECT t.status,
           count(*) AS n,
           count(*) FILTER (WHERE t.due_date < now() AND t.status <> 'completed') AS overdue,
           count(*) FILTER (WHERE t.assignee_id = :me AND t.status <> 'completed') AS mine,
           count(*) FILTER (WHERE t.reviewer_id = :me AND t.status = 'review') AS to_review,
           count(*) FILTER (WHERE t.status <> 'completed' AND EXISTS (
               SELECT 1 FROM comments c WHERE c.task_id = t.id AND c.mentions @> ARRAY[:me]
           )) AS mentioned
    FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.worker_id = :me
    WHERE CAST(:scope AS bigint[]) IS NULL OR t.project_id = ANY(CAST(:scope AS bigint[]))
    GROUP BY t.status
    """
)
_PROJECTS = text(
    "SELECT count(*) FROM project_members WHERE worker_id = :me"
    " AND (CAST(:scope AS bigint[]) IS NULL OR project_id = ANY(CAST(:scope AS bigint[])))"
)


async def status_summary(db: Database, actor: Actor) -> StatusSummary:
    """How much work is where, in the projects the caller belongs to (and its key may see)."""
    who = {"me": actor.worker_id, "scope": actor.scopes.listed()}
    async with db.transaction() as session:
        rows = (await session.execute(_COUNTS, who)).all()
        projects = int(await session.scalar(_PROJECTS, who) or 0)
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
        to_review=sum(int(r.to_review) for r in rows),
        mentioned_open=sum(int(r.mentioned) for r in rows),
    )

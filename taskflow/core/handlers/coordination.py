"""Coordination: dependencies between tasks, and the leases claims hold.

- **Dependencies.** `change_dependencies` adds blockers (`blocked_by`) to a task or removes one
  (`blocker_id`). A blocker may be any task the caller can see (a member of its project, any
  role); the blocked task needs a member. A change that would close a loop is refused naming
  the loop (`5 -> 7 -> 5`). Graph changes run one at a time (`DEPENDENCY_LOCK`), so two that
  are each fine alone cannot together make a cycle. Each change is audited on both tasks: the
  blocked task (`{"blocked_by": [...]}`, its version moves: its `blocked_by` changed) and each
  blocker (`{"blocks": id}`).
- **Leases.** `heartbeat` renews the holder's lease; the rules and the lazy release of run-out
  leases are in `taskflow.core.handlers.leases`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import AuditAction
from taskflow.core.errors import Conflict, NotFound, ValidationFailed
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.leases import check_holds_lease, renew
from taskflow.core.handlers.task_rows import ENTITY, Locked
from taskflow.core.handlers.tasks import TaskId, Version
from taskflow.core.handlers.transitions import step
from taskflow.core.schemas import LeaseSeconds, Model, TaskOut
from taskflow.core.uow import UnitOfWork

COORDINATION = "coordination"
DEPENDENCY_LOCK = 7270414  # pg_advisory_xact_lock key serialising dependency changes


class ChangeDependencies(Model):
    task_id: TaskId
    blocked_by: list[TaskId] = Field(
        default_factory=list, max_length=100, description="Blockers to add"
    )
    blocker_id: TaskId | None = Field(default=None, description="A blocker to remove")
    expected_version: Version = None


class Heartbeat(Model):
    task_id: TaskId
    lease_seconds: LeaseSeconds = None


# ------------------------------------------------------------------ dependencies

_VISIBLE = text(
    """
    SELECT t.id, t.project_id FROM tasks t
    WHERE t.id = ANY(CAST(:ids AS bigint[]))
      AND EXISTS (SELECT 1 FROM project_members m
                  WHERE m.project_id = t.project_id AND m.worker_id = :worker_id)
    """
)

# Everything the new blockers wait for, directly or not (UNION: each task once).
_UPSTREAM = text(
    """
    WITH RECURSIVE up(id) AS (
        SELECT unnest(CAST(:ids AS bigint[]))
        UNION
        SELECT d.blocker_id FROM task_dependencies d JOIN up ON d.task_id = up.id
    )
    SELECT id FROM up
    """
)

_EDGES = text(
    "SELECT task_id, blocker_id FROM task_dependencies WHERE task_id = ANY(CAST(:ids AS bigint[]))"
)


async def _refuse_cycle(session: AsyncSession, task_id: int, new: list[int]) -> None:
    """A new blocker that already waits (however indirectly) for the task would close a loop."""
    reached = [r[0] for r in (await session.execute(_UPSTREAM, {"ids": new})).all()]
    if task_id not in reached:
        return
    edges: dict[int, list[int]] = {}
    for waiter, blocker in (await session.execute(_EDGES, {"ids": reached})).all():
        edges.setdefault(waiter, []).append(blocker)
    for start in new:  # the shortest way back to the task from one of the new blockers
        came_from: dict[int, int | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == task_id:
                path = [node]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])  # type: ignore[arg-type]
                loop = " -> ".join(str(i) for i in [task_id, *reversed(path)])
                raise Conflict(
                    f"task {task_id} cannot wait for task {start}: that would make a cycle "
                    f"({loop}; each waits for the next)",
                    field="blocked_by",
                    cycle=[task_id, *reversed(path)],
                )
            for nxt in sorted(edges.get(node, ())):
                if nxt not in came_from:
                    came_from[nxt] = node
                    queue.append(nxt)


async def _add(
    session: AsyncSession, actor: Actor, locked: Locked, ids: list[int]
) -> list[dict[str, Any]]:
    """Add blockers; the entries to write on the blockers' chains (none when all were there)."""
    task_id = locked.id
    wanted = sorted(set(ids))
    if task_id in wanted:
        raise Conflict(f"task {task_id} cannot wait for itself", field="blocked_by")
    found = dict(
        (await session.execute(_VISIBLE, {"ids": wanted, "worker_id": actor.worker_id})).all()
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(
            f"task {', '.join(map(str, missing))} not found, or in a project you are not a "
            "member of: list tasks to find ids",
            entity="task",
        )
    await _refuse_cycle(session, task_id, wanted)
    added = (
        await session.execute(
            text(
                """
                INSERT INTO task_dependencies (task_id, blocker_id)
                SELECT :task_id, unnest(CAST(:ids AS bigint[]))
                ON CONFLICT DO NOTHING
                RETURNING blocker_id
                """
            ),
            {"task_id": task_id, "ids": wanted},
        )
    ).all()
    return [
        {
            "entity_type": ENTITY,
            "entity_id": blocker,
            "project_id": found[blocker],
            "task_id": blocker,
            "action": AuditAction.DEPENDENCY_ADDED,
            "details": {"blocks": task_id},
        }
        for blocker in sorted(r[0] for r in added)
    ]


@declare(
    ChangeDependencies,
    toolset=COORDINATION,
    idempotent=True,
    mcp="change_dependencies",
    rest=(
        Route("POST", "/api/tasks/{task_id}/dependencies"),
        Route(
            "DELETE",
            "/api/tasks/{task_id}/dependencies/{blocker_id}",
            name="remove_dependency",
        ),
    ),
    cli="depend",
)
async def change_dependencies(cmd: ChangeDependencies, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Add blockers (blocked_by: task ids, any project you see) or remove one (blocker_id);
    a task starts only once its blockers are done; cycles are refused."""
    if not cmd.blocked_by and cmd.blocker_id is None:
        raise ValidationFailed(
            "nothing to change: send blocked_by (ids to add) or blocker_id (one to remove)",
            field="blocked_by",
        )
    session = uow.session
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DEPENDENCY_LOCK})
    locked = await rows.lock_task(
        session, actor, cmd.task_id, expected_version=cmd.expected_version
    )
    entries: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    action = AuditAction.DEPENDENCY_ADDED
    if cmd.blocked_by:
        entries = await _add(session, actor, locked, cmd.blocked_by)
        if entries:
            details["blocked_by"] = [e["entity_id"] for e in entries]
    if cmd.blocker_id is not None:
        removed = (
            await session.execute(
                text(
                    """
                    DELETE FROM task_dependencies d USING tasks b
                    WHERE d.task_id = :task_id AND d.blocker_id = :blocker AND b.id = d.blocker_id
                    RETURNING b.project_id
                    """
                ),
                {"task_id": locked.id, "blocker": cmd.blocker_id},
            )
        ).first()
        if removed is None:
            raise NotFound(
                f"task {locked.id} is not blocked by task {cmd.blocker_id}: read the task's "
                "blocked_by for its blockers",
                entity="dependency",
                next_step=step("get_task", locked.id),
            )
        if not entries:
            action = AuditAction.DEPENDENCY_REMOVED
        details["unblocked_by"] = [cmd.blocker_id]
        entries.append(
            {
                "entity_type": ENTITY,
                "entity_id": cmd.blocker_id,
                "project_id": removed[0],
                "task_id": cmd.blocker_id,
                "action": AuditAction.DEPENDENCY_REMOVED,
                "details": {"no_longer_blocks": locked.id},
            }
        )
    if not entries:  # every blocker was already there: nothing changes
        return await rows.read_task(session, locked.id)
    await uow.record_many(actor, entries)
    return await rows.apply_change(session, actor, locked, {}, action, details)


@declare(
    Heartbeat,
    toolset=COORDINATION,
    mcp="heartbeat",
    rest=Route("POST", "/api/tasks/{task_id}/heartbeat"),
    cli="heartbeat",
)
async def heartbeat(cmd: Heartbeat, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Renew your claim's lease on a task (by lease_seconds, else the claim's length);
    progress renews it too. An expired lease releases the task."""
    locked = await rows.lock_task(uow.session, actor, cmd.task_id)
    check_holds_lease(locked, actor)
    return await renew(uow.session, actor, locked, cmd.lease_seconds, "heartbeat")

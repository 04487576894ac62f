"""Lookups and permission checks shared by every service.

A project the caller is not a member of answers "not found", never "forbidden": its existence is
not the caller's business. So does a project the caller's API key is not limited to
(`taskflow.core.scopes`): `visible` is that test for rows read in SQL, `scope_clause` for ORM
queries, and `project_with_role` applies it to every project lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.domain import Role, is_number
from taskflow.core.errors import NextStep, NotFound
from taskflow.core.models import Project, ProjectMember, Worker
from taskflow.core.permissions import check_role as check_role
from taskflow.core.permissions import project_not_found as project_not_found
from taskflow.core.permissions import role_in_found
from taskflow.core.permissions import visible as visible


def project_clause(ref: str | int) -> ColumnElement[bool]:
    """Slug or id. An all-digit slug (`2024`) is valid, so digits match either; `project_with_role`
    prefers the slug when both exist."""
    text_ref = str(ref)
    if is_number(text_ref):
        return or_(Project.slug == text_ref, Project.id == int(text_ref))
    return Project.slug == text_ref


async def project_with_role(
    session: AsyncSession, actor: Actor, ref: str | int, needed: Role = Role.VIEWER
) -> tuple[Project, Role]:
    """The project named by slug or id, and the caller's role in it (checked against `needed`)."""
    stmt = (
        select(Project, ProjectMember.role)
        .outerjoin(
            ProjectMember,
            (ProjectMember.project_id == Project.id) & (ProjectMember.worker_id == actor.worker_id),
        )
        .where(project_clause(ref))
        .order_by((Project.slug == str(ref)).desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        raise project_not_found(ref)
    project, role = row
    return project, role_in_found(actor, ref, project.id, project.slug, role, needed)


def scope_clause(actor: Actor, column: Any) -> ColumnElement[bool] | None:
    """`column IN (the key's projects)` for a project-limited key, else None (no limit)."""
    ids = actor.scopes.listed()
    return None if ids is None else column.in_(ids)


async def role_in(session: AsyncSession, worker_id: int, project_id: int) -> Role | None:
    role = await session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.worker_id == worker_id
        )
    )
    return Role(role) if role else None


async def worker_by_handle(
    session: AsyncSession, handle: str, *, for_update: bool = False
) -> Worker:
    """The worker with this handle; `for_update` locks its row (deactivation, reactivation)."""
    stmt = select(Worker).where(Worker.handle == handle)
    worker = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if worker is None:
        raise NotFound(
            f"no worker {handle}: list the workers to find their handles",
            entity="worker",
            next_step=NextStep("list_workers"),
        )
    return worker


# An agent's lineage: itself, whoever registered it, and on up while the registrant is an agent
# (the first human ends it: a human's own creator, who ran `worker add`, is no registrant of
# that human's agents). `origin` is the worker whose lineage a row belongs to.
_LINEAGE = text(
    """
    WITH RECURSIVE up AS (
        SELECT w.id, w.created_by_id, w.type, w.id AS origin
        FROM workers w WHERE w.id = ANY(CAST(:ids AS bigint[]))
        UNION
        SELECT w.id, w.created_by_id, w.type, up.origin
        FROM up JOIN workers w ON w.id = up.created_by_id
        WHERE up.type = 'agent'
    )
    SELECT origin, id, type FROM up
    """
)

# Whether :me owns a project one of these agents is a member of.
_OWNS_PROJECT_OF = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM project_members m
        JOIN project_members o ON o.project_id = m.project_id
             AND o.worker_id = :me AND o.role = 'owner'
        WHERE m.worker_id = ANY(CAST(:agents AS bigint[]))
    )
    """
)

# Every agent :me manages: registered by :me or by an agent it manages, or a member of a
# project :me owns (and every agent registered down from those), transitively.
_MANAGED = text(
    """
    WITH RECURSIVE roots AS (
        SELECT w.id FROM workers w WHERE w.created_by_id = :me AND w.type = 'agent'
        UNION
        SELECT m.worker_id FROM project_members m
        JOIN project_members o ON o.project_id = m.project_id
             AND o.worker_id = :me AND o.role = 'owner'
        JOIN workers w ON w.id = m.worker_id AND w.type = 'agent'
    ),
    down AS (
        SELECT id FROM roots
        UNION
        SELECT w.id FROM workers w JOIN down d ON w.created_by_id = d.id WHERE w.type = 'agent'
    )
    SELECT id FROM down WHERE id <> :me
    """
)


# Active agents registered by :w, or by an agent registered down from it.
_REGISTERED_DOWN = text(
    """
    WITH RECURSIVE down AS (
        SELECT w.id, w.deactivated_at FROM workers w
        WHERE w.created_by_id = :w AND w.type = 'agent'
        UNION ALL
        SELECT w.id, w.deactivated_at FROM workers w JOIN down d ON w.created_by_id = d.id
        WHERE w.type = 'agent'
    )
    SELECT count(*) FROM down WHERE deactivated_at IS NULL
    """
)


async def count_registered_down(session: AsyncSession, worker_id: int) -> int:
    """How many active agents the worker registered, itself or through its agents."""
    return int(await session.scalar(_REGISTERED_DOWN, {"w": worker_id}) or 0)


async def lineages(session: AsyncSession, ids: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
    """Each worker's lineage (see `_LINEAGE`) as (id, type) pairs, the worker itself included."""
    found: dict[int, list[tuple[int, str]]] = {}
    rows = await session.execute(_LINEAGE, {"ids": sorted(set(ids))})
    for origin, worker_id, kind in rows:
        found.setdefault(origin, []).append((worker_id, kind))
    return found


async def manages(session: AsyncSession, actor: Actor, agent: Worker) -> bool:
    """An agent is managed by itself, by whoever registered it or any agent up that chain (and
    the human who began it), and by the owners of a project any agent of that chain is in."""
    chain = (await lineages(session, [agent.id])).get(agent.id, [])
    if any(worker_id == actor.worker_id for worker_id, _ in chain):
        return True
    agents = [worker_id for worker_id, kind in chain if kind == "agent"]
    owns = await session.scalar(_OWNS_PROJECT_OF, {"me": actor.worker_id, "agents": agents})
    return bool(owns)


async def managed_ids(session: AsyncSession, actor: Actor) -> list[int]:
    """The ids of every agent the actor manages (`manages`), itself aside."""
    return list(await session.scalars(_MANAGED, {"me": actor.worker_id}))


async def kin(session: AsyncSession, me: int, others: Iterable[int]) -> set[int]:
    """Those of `others` that `me` is, registered (transitively), or was registered by
    (transitively): separation of duties treats them as one party."""
    others = set(others)
    chains = await lineages(session, others | {me})
    mine = {worker_id for worker_id, _ in chains.get(me, [])}
    return {
        other
        for other in others
        if other in mine or me in {worker_id for worker_id, _ in chains.get(other, [])}
    }

"""Lookups and permission checks shared by every service.

A project the caller is not a member of answers "not found", never "forbidden": its existence is
not the caller's business.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.domain import Role, is_number, role_at_least
from taskflow.core.errors import Forbidden, NextStep, NotFound
from taskflow.core.models import Project, ProjectMember, Worker

_WHAT_ROLE_ALLOWS = {
    Role.VIEWER: "read",
    Role.MEMBER: "work on tasks",
    Role.ADMIN: "manage members and settings",
    Role.OWNER: "delete the project or change its approval policy",
}


def project_not_found(ref: str | int) -> NotFound:
    return NotFound(
        f"project {ref!r} not found, or you are not a member: list your projects, or ask its "
        "owner to add you",
        entity="project",
        next_step=NextStep("list_projects"),
    )


def check_role(role: Role | None, needed: Role, where: str, ref: str | int) -> Role:
    """Raise NotFound for non-members and Forbidden when the role is too low."""
    if role is None:
        raise project_not_found(ref)
    if not role_at_least(role, needed):
        raise Forbidden(
            f"you are a {role} of project {where}; to {_WHAT_ROLE_ALLOWS[needed]} you need to be "
            f"{needed} or higher: ask an admin of the project",
            role=str(role),
            needed=str(needed),
        )
    return role


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
    return project, check_role(Role(role) if role else None, needed, project.slug, ref)


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

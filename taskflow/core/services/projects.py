"""Projects and their members: who may see and do what where."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import ApprovalPolicy, AuditAction, Role, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NotFound, StaleVersion
from taskflow.core.models import Project, ProjectMember, Task, Worker
from taskflow.core.schemas import AddMember, CreateProject, MemberOut, ProjectOut, UpdateProject
from taskflow.core.services.access import (
    check_role,
    project_with_role,
    role_in,
    worker_by_handle,
)

ENTITY = "project"


def _out(project: Project, owner: str, role: Role | None) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        slug=project.slug,
        name=project.name,
        description=project.description,
        owner=owner,
        approval_policy=ApprovalPolicy(project.approval_policy),
        version=project.version,
        created_at=project.created_at,
        updated_at=project.updated_at,
        my_role=role,
    )


async def _owner_handle(session: AsyncSession, project: Project) -> str:
    return str(await session.scalar(select(Worker.handle).where(Worker.id == project.owner_id)))


def check_version(kind: str, ref: object, current: int, expected: int | None) -> None:
    """Refuse a change based on an older version: the caller must re-read and decide again."""
    if expected is not None and expected != current:
        raise StaleVersion(
            f"{kind} {ref} changed since you read it (you had version {expected}, it is now "
            f"{current}): read it again and retry with expected_version={current}",
            current_version=current,
        )


async def _record(
    session: AsyncSession,
    actor: Actor,
    project: Project,
    action: AuditAction,
    details: dict[str, Any],
) -> None:
    """Append a project entry: the project is both the entity and the scope, so the entry shows
    in the project's own history and in its project-wide log."""
    await audit.record(
        session,
        actor,
        entity_type=ENTITY,
        entity_id=project.id,
        project_id=project.id,
        action=action,
        details=details,
    )


async def create_project(db: Database, actor: Actor, cmd: CreateProject) -> ProjectOut:
    async with db.transaction() as session:
        return await insert_project(session, actor, cmd)


async def insert_project(session: AsyncSession, actor: Actor, cmd: CreateProject) -> ProjectOut:
    """Create a project owned by the actor inside an open transaction."""
    taken = await session.scalar(select(Project.id).where(Project.slug == cmd.slug))
    if taken is not None:
        raise Conflict(
            f"a project with slug {cmd.slug!r} already exists: pick another slug",
            field="slug",
        )
    project = Project(
        slug=cmd.slug,
        name=cmd.name,
        description=cmd.description,
        owner_id=actor.worker_id,
        approval_policy=cmd.approval_policy.value,
    )
    session.add(project)
    await session.flush()
    session.add(ProjectMember(project_id=project.id, worker_id=actor.worker_id, role="owner"))
    await session.flush()
    await session.refresh(project)
    await _record(
        session,
        actor,
        project,
        AuditAction.CREATED,
        {"new": cmd.model_dump(mode="json"), "owner": actor.handle},
    )
    return _out(project, actor.handle, Role.OWNER)


async def get_project(db: Database, actor: Actor, ref: str | int) -> ProjectOut:
    async with db.transaction() as session:
        project, role = await project_with_role(session, actor, ref)
        return _out(project, await _owner_handle(session, project), role)


async def list_projects(db: Database, actor: Actor) -> list[ProjectOut]:
    """The projects the caller is a member of, by slug."""
    owner = aliased(Worker)
    stmt = (
        select(Project, ProjectMember.role, owner.handle)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .join(owner, owner.id == Project.owner_id)
        .where(ProjectMember.worker_id == actor.worker_id)
        .order_by(Project.slug)
    )
    async with db.transaction() as session:
        rows = (await session.execute(stmt)).all()
    return [_out(p, handle, Role(role)) for p, role, handle in rows]


async def update_project(
    db: Database, actor: Actor, ref: str | int, cmd: UpdateProject
) -> ProjectOut:
    """Admins edit name and description; only owners change the approval policy."""
    sent = cmd.model_dump(exclude_unset=True, exclude={"expected_version"}, mode="json")
    needed = Role.OWNER if "approval_policy" in sent else Role.ADMIN
    async with db.transaction() as session:
        project, role = await project_with_role(session, actor, ref, needed)
        await session.refresh(project, with_for_update=True)
        check_version("project", project.slug, project.version, cmd.expected_version)
        changes = {
            k: {"old": getattr(project, k), "new": v}
            for k, v in sent.items()
            if v is not None and getattr(project, k) != v
        }
        if changes:
            await session.execute(
                update(Project)
                .where(Project.id == project.id)
                .values(
                    **{k: c["new"] for k, c in changes.items()},
                    version=Project.version + 1,
                    updated_at=func.now(),
                )
            )
            await _record(session, actor, project, AuditAction.UPDATED, {"changes": changes})
            await session.refresh(project)
        return _out(project, await _owner_handle(session, project), role)


async def delete_project(
    db: Database, actor: Actor, ref: str | int, expected_version: int | None = None
) -> int:
    """Delete a project and its tasks; each deleted task gets its own `deleted` entry."""
    async with db.transaction() as session:
        project, _ = await project_with_role(session, actor, ref, Role.OWNER)
        await session.refresh(project, with_for_update=True)
        check_version("project", project.slug, project.version, expected_version)
        tasks = (
            await session.execute(
                select(Task.id, Task.title, Task.status).where(Task.project_id == project.id)
            )
        ).all()
        await audit.record_many(
            session,
            actor,
            (
                {
                    "entity_type": "task",
                    "entity_id": task_id,
                    "project_id": project.id,
                    "task_id": task_id,
                    "action": AuditAction.DELETED,
                    "details": {
                        "old": {"title": title, "status": status},
                        "reason": "project deleted",
                    },
                }
                for task_id, title, status in tasks
            ),
        )
        await _record(
            session,
            actor,
            project,
            AuditAction.DELETED,
            {"old": {"slug": project.slug, "name": project.name}, "tasks": len(tasks)},
        )
        await session.execute(delete(Project).where(Project.id == project.id))
        return project.id


async def list_members(db: Database, actor: Actor, ref: str | int) -> list[MemberOut]:
    async with db.transaction() as session:
        project, _ = await project_with_role(session, actor, ref)
        rows = (
            await session.execute(
                select(Worker, ProjectMember.role, ProjectMember.added_at)
                .join(ProjectMember, ProjectMember.worker_id == Worker.id)
                .where(ProjectMember.project_id == project.id)
                .order_by(Worker.handle)
            )
        ).all()
    return [
        MemberOut(
            handle=w.handle, name=w.name, type=WorkerType(w.type), role=Role(r), added_at=added
        )
        for w, r, added in rows
    ]


def _check_can_grant(my_role: Role, role: Role) -> None:
    if role is Role.OWNER and my_role is not Role.OWNER:
        raise Forbidden("only an owner can make someone an owner")


async def add_member(db: Database, actor: Actor, ref: str | int, cmd: AddMember) -> MemberOut:
    async with db.transaction() as session:
        return await insert_member(session, actor, ref, cmd)


async def insert_member(
    session: AsyncSession, actor: Actor, ref: str | int, cmd: AddMember
) -> MemberOut:
    """Add a member (the actor must be an admin) inside an open transaction."""
    project, my_role = await project_with_role(session, actor, ref, Role.ADMIN)
    _check_can_grant(my_role, cmd.role)
    worker = await worker_by_handle(session, cmd.handle)
    inserted = await session.execute(
        insert(ProjectMember)
        .values(project_id=project.id, worker_id=worker.id, role=cmd.role.value)
        .on_conflict_do_nothing()
        .returning(ProjectMember.added_at)
    )
    added_at = inserted.scalar()
    if added_at is None:
        raise Conflict(
            f"{cmd.handle} is already a member of {project.slug}: change their role instead"
        )
    await _record(
        session,
        actor,
        project,
        AuditAction.MEMBER_ADDED,
        {"member": cmd.handle, "role": cmd.role.value},
    )
    return MemberOut(
        handle=worker.handle,
        name=worker.name,
        type=WorkerType(worker.type),
        role=cmd.role,
        added_at=added_at,
    )


async def _member_row(session: AsyncSession, project: Project, handle: str) -> ProjectMember:
    worker = await worker_by_handle(session, handle)
    member = await session.get(
        ProjectMember, (project.id, worker.id), with_for_update=True, populate_existing=True
    )
    if member is None:
        raise NotFound(f"{handle} is not a member of {project.slug}", entity="member")
    return member


async def _refuse_last_owner(
    session: AsyncSession, project: Project, member: ProjectMember
) -> None:
    if member.role != Role.OWNER.value:
        return
    owners = await session.scalar(
        select(func.count())
        .select_from(ProjectMember)
        .where(ProjectMember.project_id == project.id, ProjectMember.role == "owner")
    )
    if owners <= 1:
        raise Conflict(f"this is the last owner of {project.slug}: make someone else owner first")


async def _lock_for_members(
    session: AsyncSession, actor: Actor, ref: str | int
) -> tuple[Project, Role]:
    """The project row locked and the caller's role re-read under the lock, so concurrent member
    changes run one at a time: two owners removing each other cannot leave the project ownerless.
    """
    project, _ = await project_with_role(session, actor, ref, Role.ADMIN)
    await session.refresh(project, with_for_update=True)
    role = await role_in(session, actor.worker_id, project.id)
    return project, check_role(role, Role.ADMIN, project.slug, ref)


async def remove_member(db: Database, actor: Actor, ref: str | int, handle: str) -> None:
    async with db.transaction() as session:
        project, my_role = await _lock_for_members(session, actor, ref)
        member = await _member_row(session, project, handle)
        _check_can_grant(my_role, Role(member.role))
        await _refuse_last_owner(session, project, member)
        await session.delete(member)
        await _record(
            session,
            actor,
            project,
            AuditAction.MEMBER_REMOVED,
            {"member": handle, "role": member.role},
        )


async def change_role(db: Database, actor: Actor, ref: str | int, cmd: AddMember) -> MemberOut:
    async with db.transaction() as session:
        project, my_role = await _lock_for_members(session, actor, ref)
        member = await _member_row(session, project, cmd.handle)
        _check_can_grant(my_role, cmd.role)
        _check_can_grant(my_role, Role(member.role))
        if member.role != cmd.role.value:
            if cmd.role is not Role.OWNER:
                await _refuse_last_owner(session, project, member)
            old = member.role
            member.role = cmd.role.value
            await _record(
                session,
                actor,
                project,
                AuditAction.ROLE_CHANGED,
                {
                    "member": cmd.handle,
                    "changes": {"role": {"old": old, "new": member.role}},
                },
            )
        worker = await worker_by_handle(session, cmd.handle)
        return MemberOut(
            handle=worker.handle,
            name=worker.name,
            type=WorkerType(worker.type),
            role=cmd.role,
            added_at=member.added_at,
        )

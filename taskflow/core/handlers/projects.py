"""Projects and their members: commands, handlers and declarations.

Each operation is one command model (`extra="forbid"`), one handler `(command, uow, actor)` that
never opens a transaction, and one `@declare` naming how every surface reaches it. Commands that
act on a project carry its reference (`project`: slug or id); where `taskflow.core.schemas`
already has the body a surface sends, the command extends it with that reference, so each
field's limits and messages are written once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import aliased

from taskflow.core import schemas
from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import ApprovalPolicy, AuditAction, Role, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NotFound, StaleVersion
from taskflow.core.models import Project, ProjectMember, Task, Worker
from taskflow.core.schemas import CreateProject, Handle, MemberOut, Model, ProjectOut, ProjectRef
from taskflow.core.services.access import (
    check_role,
    project_with_role,
    role_in,
    scope_clause,
    worker_by_handle,
)
from taskflow.core.uow import UnitOfWork

ENTITY = "project"
READS = "directory"  # finding one's way: the projects one is in, their members
ADMIN = "admin"  # creating, changing and deleting projects, managing membership


class GetProject(Model):
    project: ProjectRef


class ListProjects(Model):
    pass


class UpdateProject(schemas.UpdateProject):
    project: ProjectRef


class DeleteProject(Model):
    project: ProjectRef
    expected_version: schemas.Version = None


class ListMembers(Model):
    project: ProjectRef


class AddMember(schemas.AddMember):
    project: ProjectRef


class RemoveMember(Model):
    project: ProjectRef
    handle: Handle


class ChangeRole(Model):
    project: ProjectRef
    handle: Handle
    role: Role


def project_out(project: Project, owner: str, role: Role | None) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        slug=project.slug,
        name=project.name,
        description=project.description,
        owner=owner,
        approval_policy=ApprovalPolicy(project.approval_policy),
        lease_seconds=project.lease_seconds,
        version=project.version,
        created_at=project.created_at,
        updated_at=project.updated_at,
        my_role=role,
        allow_open_subtasks=project.allow_open_subtasks,
        recur_subtasks=project.recur_subtasks,
    )


def member_out(worker: Worker, role: Role, added_at: Any) -> MemberOut:
    return MemberOut(
        handle=worker.handle,
        name=worker.name,
        type=WorkerType(worker.type),
        role=role,
        added_at=added_at,
    )


async def _owner_handle(uow: UnitOfWork, project: Project) -> str:
    return str(await uow.session.scalar(select(Worker.handle).where(Worker.id == project.owner_id)))


def check_version(kind: str, ref: object, current: int, expected: int | None) -> None:
    """Refuse a change based on an older version: the caller must re-read and decide again."""
    if expected is not None and expected != current:
        raise StaleVersion(
            f"{kind} {ref} changed since you read it (you had version {expected}, it is now "
            f"{current}): read it again and retry with expected_version={current}",
            current_version=current,
        )


async def _record(
    uow: UnitOfWork, actor: Actor, project: Project, action: AuditAction, details: dict[str, Any]
) -> None:
    """Append a project entry: the project is both the entity and the scope, so the entry shows
    in the project's own history and in its project-wide log."""
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=project.id,
        project_id=project.id,
        action=action,
        details=details,
    )


@declare(
    CreateProject,
    toolset=ADMIN,
    mcp="create_project",
    rest=Route("POST", "/api/projects", 201),
    cli="project add",
)
async def create_project(cmd: CreateProject, uow: UnitOfWork, actor: Actor) -> ProjectOut:
    """Create a project; you become its owner."""
    session = uow.session
    taken = await session.scalar(select(Project.id).where(Project.slug == cmd.slug))
    if taken is not None:
        raise Conflict(
            f"a project with slug {cmd.slug!r} already exists: pick another slug", field="slug"
        )
    project = Project(
        slug=cmd.slug,
        name=cmd.name,
        description=cmd.description,
        owner_id=actor.worker_id,
        approval_policy=cmd.approval_policy.value,
        allow_open_subtasks=cmd.allow_open_subtasks,
        recur_subtasks=cmd.recur_subtasks,
    )
    session.add(project)
    await session.flush()
    session.add(ProjectMember(project_id=project.id, worker_id=actor.worker_id, role="owner"))
    await session.flush()
    await session.refresh(project)
    await _record(
        uow,
        actor,
        project,
        AuditAction.CREATED,
        {"new": cmd.model_dump(mode="json"), "owner": actor.handle},
    )
    return project_out(project, actor.handle, Role.OWNER)


@declare(
    GetProject,
    toolset=READS,
    read_only=True,
    mcp="get_project",
    rest=Route("GET", "/api/projects/{project}"),
    cli="project show",
)
async def get_project(cmd: GetProject, uow: UnitOfWork, actor: Actor) -> ProjectOut:
    """Read one project (by slug or id) with your role in it."""
    project, role = await project_with_role(uow.session, actor, cmd.project)
    return project_out(project, await _owner_handle(uow, project), role)


@declare(
    ListProjects,
    toolset=READS,
    read_only=True,
    mcp="list_projects",
    rest=Route("GET", "/api/projects"),
    cli="project list",
)
async def list_projects(cmd: ListProjects, uow: UnitOfWork, actor: Actor) -> list[ProjectOut]:
    """List the projects you are a member of, with your role in each, by slug."""
    owner = aliased(Worker)
    stmt = (
        select(Project, ProjectMember.role, owner.handle)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .join(owner, owner.id == Project.owner_id)
        .where(ProjectMember.worker_id == actor.worker_id)
        .order_by(Project.slug)
    )
    limited = scope_clause(actor, Project.id)
    if limited is not None:
        stmt = stmt.where(limited)
    rows = (await uow.session.execute(stmt)).all()
    return [project_out(p, handle, Role(role)) for p, role, handle in rows]


@declare(
    UpdateProject,
    toolset=ADMIN,
    idempotent=True,
    mcp="update_project",
    rest=Route("PUT", "/api/projects/{project}"),
    cli="project edit",
)
async def update_project(cmd: UpdateProject, uow: UnitOfWork, actor: Actor) -> ProjectOut:
    """Change a project's name, description, claim lease or settings (owners only for the
    policies: approval_policy, allow_open_subtasks)."""
    sent = cmd.model_dump(exclude_unset=True, exclude={"expected_version", "project"}, mode="json")
    needed = Role.OWNER if sent.keys() & {"approval_policy", "allow_open_subtasks"} else Role.ADMIN
    session = uow.session
    project, role = await project_with_role(session, actor, cmd.project, needed)
    await session.refresh(project, with_for_update=True)
    check_version("project", project.slug, project.version, cmd.expected_version)
    changes = {
        k: {"old": getattr(project, k), "new": v}
        for k, v in sent.items()
        if v is not None and getattr(project, k) != v
    }
    if changes:  # a change that changes nothing writes nothing and keeps the version
        await session.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(
                **{k: c["new"] for k, c in changes.items()},
                version=Project.version + 1,
                updated_at=func.now(),
            )
        )
        await _record(uow, actor, project, AuditAction.UPDATED, {"changes": changes})
        await session.refresh(project)
    return project_out(project, await _owner_handle(uow, project), role)


@declare(
    DeleteProject,
    toolset=ADMIN,
    destructive=True,
    mcp="delete_project",
    rest=Route("DELETE", "/api/projects/{project}", 204),
    cli="project delete",
)
async def delete_project(cmd: DeleteProject, uow: UnitOfWork, actor: Actor) -> int:
    """Delete a project and all its tasks (owners only); each deleted task gets its own entry."""
    session = uow.session
    project, _ = await project_with_role(session, actor, cmd.project, Role.OWNER)
    await session.refresh(project, with_for_update=True)
    check_version("project", project.slug, project.version, cmd.expected_version)
    tasks = (
        await session.execute(
            select(Task.id, Task.title, Task.status).where(Task.project_id == project.id)
        )
    ).all()
    await uow.record_many(
        actor,
        (
            {
                "entity_type": "task",
                "entity_id": task_id,
                "project_id": project.id,
                "task_id": task_id,
                "action": AuditAction.DELETED,
                "details": {"old": {"title": title, "status": status}, "reason": "project deleted"},
            }
            for task_id, title, status in tasks
        ),
    )
    await _record(
        uow,
        actor,
        project,
        AuditAction.DELETED,
        {"old": {"slug": project.slug, "name": project.name}, "tasks": len(tasks)},
    )
    await session.execute(delete(Project).where(Project.id == project.id))
    return project.id


@declare(
    ListMembers,
    toolset=READS,
    read_only=True,
    mcp="list_members",
    rest=Route("GET", "/api/projects/{project}/workers"),
    cli="member list",
)
async def list_members(cmd: ListMembers, uow: UnitOfWork, actor: Actor) -> list[MemberOut]:
    """List a project's members and their roles."""
    project, _ = await project_with_role(uow.session, actor, cmd.project)
    rows = (
        await uow.session.execute(
            select(Worker, ProjectMember.role, ProjectMember.added_at)
            .join(ProjectMember, ProjectMember.worker_id == Worker.id)
            .where(ProjectMember.project_id == project.id)
            .order_by(Worker.handle)
        )
    ).all()
    return [member_out(w, Role(r), added) for w, r, added in rows]


def _check_can_grant(my_role: Role, role: Role) -> None:
    if role is Role.OWNER and my_role is not Role.OWNER:
        raise Forbidden("only an owner can make someone an owner")


@declare(
    AddMember,
    toolset=ADMIN,
    mcp="add_member",
    rest=Route("POST", "/api/projects/{project}/workers", 201),
    cli="member add",
)
async def add_member(cmd: AddMember, uow: UnitOfWork, actor: Actor) -> MemberOut:
    """Add a worker (human or agent) to a project with a role (admins only)."""
    project, my_role = await project_with_role(uow.session, actor, cmd.project, Role.ADMIN)
    _check_can_grant(my_role, cmd.role)
    worker = await worker_by_handle(uow.session, cmd.handle)
    inserted = await uow.session.execute(
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
    details = {"member": cmd.handle, "role": cmd.role.value}
    await _record(uow, actor, project, AuditAction.MEMBER_ADDED, details)
    return member_out(worker, cmd.role, added_at)


async def _member_row(uow: UnitOfWork, project: Project, handle: str) -> ProjectMember:
    worker = await worker_by_handle(uow.session, handle)
    member = await uow.session.get(
        ProjectMember, (project.id, worker.id), with_for_update=True, populate_existing=True
    )
    if member is None:
        raise NotFound(f"{handle} is not a member of {project.slug}", entity="member")
    return member


async def _refuse_last_owner(uow: UnitOfWork, project: Project, member: ProjectMember) -> None:
    if member.role != Role.OWNER.value:
        return
    owners = await uow.session.scalar(
        select(func.count())
        .select_from(ProjectMember)
        .where(ProjectMember.project_id == project.id, ProjectMember.role == "owner")
    )
    if owners <= 1:
        raise Conflict(f"this is the last owner of {project.slug}: make someone else owner first")


async def _lock_for_members(uow: UnitOfWork, actor: Actor, ref: str) -> tuple[Project, Role]:
    """The project row locked and the caller's role re-read under the lock, so concurrent member
    changes run one at a time: two owners removing each other cannot leave the project ownerless.
    """
    project, _ = await project_with_role(uow.session, actor, ref, Role.ADMIN)
    await uow.session.refresh(project, with_for_update=True)
    role = await role_in(uow.session, actor.worker_id, project.id)
    return project, check_role(role, Role.ADMIN, project.slug, ref)


@declare(
    RemoveMember,
    toolset=ADMIN,
    destructive=True,
    mcp="remove_member",
    rest=Route("DELETE", "/api/projects/{project}/workers/{handle}", 204),
    cli="member remove",
)
async def remove_member(cmd: RemoveMember, uow: UnitOfWork, actor: Actor) -> None:
    """Remove a member from a project (admins only; the last owner cannot be removed)."""
    project, my_role = await _lock_for_members(uow, actor, cmd.project)
    member = await _member_row(uow, project, cmd.handle)
    _check_can_grant(my_role, Role(member.role))
    await _refuse_last_owner(uow, project, member)
    await uow.session.delete(member)
    await _record(
        uow,
        actor,
        project,
        AuditAction.MEMBER_REMOVED,
        {"member": cmd.handle, "role": member.role},
    )


@declare(
    ChangeRole,
    toolset=ADMIN,
    idempotent=True,
    mcp="change_role",
    rest=Route("PATCH", "/api/projects/{project}/workers/{handle}"),
    cli="member role",
)
async def change_role(cmd: ChangeRole, uow: UnitOfWork, actor: Actor) -> MemberOut:
    """Change a member's role (admins only; only owners grant or take away ownership)."""
    project, my_role = await _lock_for_members(uow, actor, cmd.project)
    member = await _member_row(uow, project, cmd.handle)
    _check_can_grant(my_role, cmd.role)
    _check_can_grant(my_role, Role(member.role))
    if member.role != cmd.role.value:
        if cmd.role is not Role.OWNER:
            await _refuse_last_owner(uow, project, member)
        old = member.role
        member.role = cmd.role.value
        await _record(
            uow,
            actor,
            project,
            AuditAction.ROLE_CHANGED,
            {"member": cmd.handle, "changes": {"role": {"old": old, "new": member.role}}},
        )
    worker = await worker_by_handle(uow.session, cmd.handle)
    return member_out(worker, cmd.role, member.added_at)

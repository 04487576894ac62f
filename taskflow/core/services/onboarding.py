"""Phase 1's two-step commands that Phase 2 must keep atomic: `init` and `worker add`.

Phase 1 had no memberships: `init` made a user and a `default` project, and `worker add` made a
worker anyone could assign. Here each is one transaction, so a half-done setup never remains.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role, Via, WorkerType
from taskflow.core.errors import Conflict
from taskflow.core.handlers import projects as project_ops
from taskflow.core.handlers import workers as worker_ops
from taskflow.core.models import Project, Worker
from taskflow.core.schemas import (
    ApiKeyOut,
    CreateHuman,
    CreateProject,
    RegisterAgent,
    WorkerOut,
)
from taskflow.core.services.access import role_in
from taskflow.core.uow import UnitOfWork

DEFAULT_PROJECT_NAME = "Default Project"


class LocalSetup(BaseModel):
    """What `init` found or created."""

    user: WorkerOut
    user_created: bool
    project: str
    project_created: bool
    role: Role | None = Field(description="The user's role in the project; None: not a member")


class AddedWorker(BaseModel):
    """A new worker, its first API key (agents only, shown once) and the project it joined."""

    worker: WorkerOut
    api_key: str | None = None
    key: ApiKeyOut | None = None
    project: str | None = None
    role: Role | None = None


async def init_local(
    db: Database,
    handle: str,
    name: str,
    project: str = "default",
    *,
    via: Via = Via.CLI,
    request_id: str | None = None,
) -> LocalSetup:
    """The local user and their default project, each created only when missing (re-runnable)."""
    async with db.transaction() as session:
        return await setup_local(session, handle, name, project, via=via, request_id=request_id)


async def setup_local(
    session: AsyncSession,
    handle: str,
    name: str,
    project: str = "default",
    *,
    via: Via = Via.CLI,
    request_id: str | None = None,
    since: datetime | None = None,
    project_name: str = DEFAULT_PROJECT_NAME,
    project_description: str = "Created by taskflow init",
) -> LocalSetup:
    """`init_local` inside an open transaction, so an import can set up its user in its own.

    `since` backdates a new user to when Phase 1 created them, and the project's name and
    description may come from a Phase 1 store, so an adopted user and project keep their past.
    """
    worker = await session.scalar(select(Worker).where(Worker.handle == handle))
    user_created = worker is None
    if worker is None:
        cmd = CreateHuman(handle=handle, name=name)
        worker = await worker_ops.create_human(
            cmd, UnitOfWork(session), via=via, request_id=request_id
        )
        if since is not None:
            await session.execute(
                update(Worker).where(Worker.id == worker.id).values(created_at=since)
            )
            await session.refresh(worker)
    elif worker.type != WorkerType.HUMAN.value:
        raise Conflict(f"{handle} is an agent: the local user must be a human", field="user")
    actor = worker_ops.actor_for(worker, via=via, request_id=request_id)
    project_id = await session.scalar(select(Project.id).where(Project.slug == project))
    project_created = project_id is None
    if project_id is None:
        cmd_project = CreateProject(
            slug=project, name=project_name, description=project_description
        )
        out = await project_ops.create_project(cmd_project, UnitOfWork(session), actor)
        project_id = out.id
    role = await role_in(session, worker.id, project_id)
    return LocalSetup(
        user=worker_ops.worker_out(worker),
        user_created=user_created,
        project=project,
        project_created=project_created,
        role=role,
    )


async def add_worker(
    db: Database,
    actor: Actor,
    cmd: CreateHuman | RegisterAgent,
    project: str | None = None,
    role: Role = Role.MEMBER,
) -> AddedWorker:
    """Create a human or register an agent and, if a project is named, make it a member."""
    async with db.transaction() as session:
        uow = UnitOfWork(session)
        if isinstance(cmd, RegisterAgent):
            issued = await worker_ops.register_agent(cmd, uow, actor)
            added = AddedWorker(worker=issued.worker, api_key=issued.api_key, key=issued.key)
        else:
            human = await worker_ops.create_human(cmd, uow, actor)
            added = AddedWorker(worker=worker_ops.worker_out(human))
        if project is not None:
            add = project_ops.AddMember(project=project, handle=cmd.handle, role=role)
            member = await project_ops.add_member(add, uow, actor)
            added.project, added.role = project, member.role
        return added

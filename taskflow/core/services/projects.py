"""Projects and their members, called the pre-kernel way: `(db, actor, ...)`.

The operations themselves live in `taskflow.core.handlers.projects`, declared once and run by the
dispatcher in one unit of work. These wrappers keep the surfaces' and tests' calls working while
the surfaces move onto the dispatcher; each one builds the command and dispatches it.
"""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import make_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import projects as ops
from taskflow.core.handlers.projects import check_version
from taskflow.core.schemas import AddMember, CreateProject, MemberOut, ProjectOut, UpdateProject

__all__ = [
    "add_member",
    "change_role",
    "check_version",
    "create_project",
    "delete_project",
    "get_project",
    "list_members",
    "list_projects",
    "remove_member",
    "update_project",
]


async def create_project(db: Database, actor: Actor, cmd: CreateProject) -> ProjectOut:
    return await run(db, actor, cmd)


async def get_project(db: Database, actor: Actor, ref: str | int) -> ProjectOut:
    return await run(db, actor, make_command(ops.GetProject, project=str(ref)))


async def list_projects(db: Database, actor: Actor) -> list[ProjectOut]:
    return await run(db, actor, make_command(ops.ListProjects))


async def update_project(
    db: Database, actor: Actor, ref: str | int, cmd: UpdateProject
) -> ProjectOut:
    sent = cmd.model_dump(exclude_unset=True)
    return await run(db, actor, make_command(ops.UpdateProject, project=str(ref), **sent))


async def delete_project(
    db: Database, actor: Actor, ref: str | int, expected_version: int | None = None
) -> int:
    command = make_command(ops.DeleteProject, project=str(ref), expected_version=expected_version)
    return await run(db, actor, command)


async def list_members(db: Database, actor: Actor, ref: str | int) -> list[MemberOut]:
    return await run(db, actor, make_command(ops.ListMembers, project=str(ref)))


async def add_member(db: Database, actor: Actor, ref: str | int, cmd: AddMember) -> MemberOut:
    return await run(db, actor, make_command(ops.AddMember, project=str(ref), **cmd.model_dump()))


async def remove_member(db: Database, actor: Actor, ref: str | int, handle: str) -> None:
    await run(db, actor, make_command(ops.RemoveMember, project=str(ref), handle=handle))


async def change_role(db: Database, actor: Actor, ref: str | int, cmd: AddMember) -> MemberOut:
    return await run(db, actor, make_command(ops.ChangeRole, project=str(ref), **cmd.model_dump()))

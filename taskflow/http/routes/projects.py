"""Projects and their members."""

from __future__ import annotations

from taskflow.core.schemas import AddMember, CreateProject, MemberOut, ProjectOut, UpdateProject
from taskflow.core.services import projects
from taskflow.http.bodies import RoleChange
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("projects")


@endpoints.get("/api/projects", operation="list_projects", response=list[ProjectOut])
async def list_projects(call: Call) -> list[ProjectOut]:
    """List the projects you are a member of, with your role in each."""
    return await projects.list_projects(call.db, call.actor)


@endpoints.post(
    "/api/projects", operation="create_project", body=CreateProject, response=ProjectOut, status=201
)
async def create_project(call: Call) -> ProjectOut:
    """Create a project; you become its owner."""
    return await projects.create_project(call.db, call.actor, call.body)


@endpoints.get("/api/projects/{project}", operation="get_project", response=ProjectOut)
async def get_project(call: Call) -> ProjectOut:
    """Read one project (by slug or id). Its ETag is its version."""
    return await projects.get_project(call.db, call.actor, call.path["project"])


@endpoints.put(
    "/api/projects/{project}",
    operation="update_project",
    body=UpdateProject,
    response=ProjectOut,
    precondition=True,
)
async def update_project(call: Call) -> ProjectOut:
    """Change a project's name, description or approval policy.

    Fields you omit stay as they are. Admins edit name and description; only owners change the
    approval policy. Send If-Match (or expected_version) to refuse a stale write with 412.
    """
    cmd: UpdateProject = call.body
    version = call.version(cmd.expected_version)
    cmd = cmd.model_copy(update={"expected_version": version})
    return await projects.update_project(call.db, call.actor, call.path["project"], cmd)


@endpoints.delete("/api/projects/{project}", operation="delete_project", precondition=True)
async def delete_project(call: Call) -> None:
    """Delete a project and all its tasks (owners only); each deletion is audited."""
    await projects.delete_project(call.db, call.actor, call.path["project"], call.version())


@endpoints.get(
    "/api/projects/{project}/workers", operation="list_members", response=list[MemberOut]
)
async def list_members(call: Call) -> list[MemberOut]:
    """List a project's members and their roles."""
    return await projects.list_members(call.db, call.actor, call.path["project"])


@endpoints.post(
    "/api/projects/{project}/workers",
    operation="add_member",
    body=AddMember,
    response=MemberOut,
    status=201,
)
async def add_member(call: Call) -> MemberOut:
    """Add a worker (human or agent) to a project with a role (admins only)."""
    return await projects.add_member(call.db, call.actor, call.path["project"], call.body)


@endpoints.patch(
    "/api/projects/{project}/workers/{handle}",
    operation="change_role",
    body=RoleChange,
    response=MemberOut,
)
async def change_role(call: Call) -> MemberOut:
    """Change a member's role (admins only; only owners grant or take away ownership)."""
    cmd = AddMember(handle=call.path["handle"], role=call.body.role)
    return await projects.change_role(call.db, call.actor, call.path["project"], cmd)


@endpoints.delete("/api/projects/{project}/workers/{handle}", operation="remove_member")
async def remove_member(call: Call) -> None:
    """Remove a member from a project (admins only; the last owner cannot be removed)."""
    await projects.remove_member(call.db, call.actor, call.path["project"], call.path["handle"])

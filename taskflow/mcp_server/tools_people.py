"""Who and where: the caller, workers, projects and members, agents and their API keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import AgentType, ApprovalPolicy, Role, WorkerType
from taskflow.core.schemas import (
    AddMember,
    CreateProject,
    DueDate,
    Handle,
    MeOut,
    ProjectRef,
    RegisterAgent,
    UpdateProject,
    WorkerFilter,
)
from taskflow.core.services import projects, workers
from taskflow.mcp_server.outputs import AgentResult, ProjectResult, ProjectsOut, WorkersOut
from taskflow.mcp_server.toolkit import (
    DESTRUCTIVE,
    READ_ONLY,
    ExpectedVersion,
    IdempotencyKey,
    Surface,
    check_action,
    make_tool,
    require,
    sent,
)

ProjectAction = Literal["create", "update", "delete", "add_member", "remove_member", "change_role"]
AgentAction = Literal[
    "register", "create_key", "list_keys", "revoke_key", "rotate_key", "deactivate", "reactivate"
]
OptionalHandle = Annotated[str | None, Field(pattern=r"^@[a-z0-9_-]+$", max_length=100)]
Text = Annotated[str | None, Field(max_length=5000)]
Label = Annotated[str | None, Field(min_length=1, max_length=200)]

_PROJECT_FIELDS = {
    "create": {"project", "name", "description", "approval_policy"},
    "update": {"project", "name", "description", "approval_policy", "expected_version"},
    "delete": {"project", "expected_version"},
    "add_member": {"project", "handle", "role"},
    "remove_member": {"project", "handle"},
    "change_role": {"project", "handle", "role"},
}
_AGENT_FIELDS = {
    "register": {"handle", "name", "agent_type", "capabilities", "expires_at"},
    "create_key": {"handle", "name", "expires_at"},
    "list_keys": {"handle"},
    "revoke_key": {"handle", "key_id"},
    "rotate_key": {"handle", "key_id"},
    "deactivate": {"handle"},
    "reactivate": {"handle", "name", "expires_at"},
}


async def _project_action(db: Database, actor: Actor, a: dict[str, Any]) -> ProjectResult:
    action, ref = a["action"], a["project"]
    check_action(action, sent(), _PROJECT_FIELDS)
    if action == "create":
        cmd = CreateProject(
            slug=ref,
            name=require(action, "name", a["name"]),
            description=a["description"] or "",
            approval_policy=a["approval_policy"] or ApprovalPolicy.NONE,
        )
        return ProjectResult(action=action, project=await projects.create_project(db, actor, cmd))
    if action == "update":
        fields = {"name", "description", "approval_policy", "expected_version"}
        change = UpdateProject(**{k: a[k] for k in sent() & fields})
        project = await projects.update_project(db, actor, ref, change)
        return ProjectResult(action=action, project=project)
    if action == "delete":
        deleted = await projects.delete_project(db, actor, ref, a["expected_version"])
        return ProjectResult(action=action, deleted_id=deleted)
    handle = require(action, "handle", a["handle"])
    if action == "remove_member":
        await projects.remove_member(db, actor, ref, handle)
        return ProjectResult(action=action, removed=handle)
    if action == "add_member":
        member = await projects.add_member(
            db, actor, ref, AddMember(handle=handle, role=a["role"] or Role.MEMBER)
        )
        return ProjectResult(action=action, member=member)
    role = require(action, "role", a["role"])
    member = await projects.change_role(db, actor, ref, AddMember(handle=handle, role=role))
    return ProjectResult(action=action, member=member)


async def _agent_action(db: Database, actor: Actor, a: dict[str, Any]) -> AgentResult:
    action, handle = a["action"], a["handle"]
    check_action(action, sent(), _AGENT_FIELDS)
    if action == "register":
        cmd = RegisterAgent(
            handle=handle,
            name=require(action, "name", a["name"]),
            agent_type=a["agent_type"] or AgentType.CUSTOM,
            capabilities=a["capabilities"] or [],
            expires_at=a["expires_at"],
        )
        return AgentResult(action=action, issued=await workers.register_agent(db, actor, cmd))
    if action == "create_key":
        issued = await workers.create_api_key(
            db, actor, handle, a["name"] or "default", a["expires_at"]
        )
        return AgentResult(action=action, issued=issued)
    if action == "list_keys":
        return AgentResult(action=action, keys=await workers.list_api_keys(db, actor, handle))
    if action == "deactivate":
        done = await workers.deactivate_agent(db, actor, handle)
        return AgentResult(action=action, worker=done.worker, keys=done.revoked_keys)
    if action == "reactivate":
        issued = await workers.reactivate_agent(
            db, actor, handle, a["name"] or "default", a["expires_at"]
        )
        return AgentResult(action=action, issued=issued)
    key_id = require(action, "key_id", a["key_id"])
    if action == "revoke_key":
        revoked = await workers.revoke_api_key(db, actor, handle, key_id)
        return AgentResult(action=action, keys=[revoked])
    issued = await workers.rotate_api_key(db, actor, handle, key_id)
    return AgentResult(action=action, issued=issued)


def build(s: Surface) -> list[Tool]:
    """The identity, worker and project tools of one server."""
    db = s.db

    async def whoami(ctx: Context) -> MeOut:
        return await s.read(ctx, lambda actor: workers.whoami(db, actor))  # type: ignore[return-value]

    async def list_projects(ctx: Context, project: ProjectRef | None = None) -> ProjectsOut:
        async def op(actor: Actor) -> ProjectsOut:
            if project is None:
                return ProjectsOut(projects=await projects.list_projects(db, actor))
            one = await projects.get_project(db, actor, project)
            return ProjectsOut(
                projects=[one], members=await projects.list_members(db, actor, project)
            )

        return await s.read(ctx, op)  # type: ignore[return-value]

    async def list_workers(
        ctx: Context, handle: OptionalHandle = None, type: WorkerType | None = None
    ) -> WorkersOut:
        async def op(actor: Actor) -> WorkersOut:
            if handle is None:
                found = await workers.list_workers(db, actor, WorkerFilter(type=type))
                return WorkersOut(workers=found)
            return WorkersOut(workers=[await workers.get_worker(db, actor, handle)])

        return await s.read(ctx, op)  # type: ignore[return-value]

    async def manage_project(
        ctx: Context,
        action: ProjectAction,
        project: ProjectRef,
        name: Label = None,
        description: Text = None,
        approval_policy: ApprovalPolicy | None = None,
        handle: OptionalHandle = None,
        role: Role | None = None,
        expected_version: ExpectedVersion = None,
        idempotency_key: IdempotencyKey = None,
    ) -> ProjectResult:
        a = {
            "action": action,
            "project": project,
            "name": name,
            "description": description,
            "approval_policy": approval_policy,
            "handle": handle,
            "role": role,
            "expected_version": expected_version,
            "idempotency_key": idempotency_key,
        }
        return await s.write(  # type: ignore[return-value]
            ctx, "manage_project", a, lambda actor: _project_action(db, actor, a), ProjectResult
        )

    async def manage_agents(
        ctx: Context,
        action: AgentAction,
        handle: Handle,
        name: Label = None,
        agent_type: AgentType | None = None,
        capabilities: list[str] | None = None,
        expires_at: DueDate = None,
        key_id: int | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> AgentResult:
        a = {
            "action": action,
            "handle": handle,
            "name": name,
            "agent_type": agent_type,
            "capabilities": capabilities,
            "expires_at": expires_at,
            "key_id": key_id,
            "idempotency_key": idempotency_key,
        }
        return await s.write(  # type: ignore[return-value]
            ctx, "manage_agents", a, lambda actor: _agent_action(db, actor, a), AgentResult
        )

    return [
        make_tool(
            whoami,
            description="Your own worker record: handle, human or agent, and your own email "
            "and SSO subject if known. Call it to learn who you are acting as.",
            annotations=READ_ONLY,
        ),
        make_tool(
            list_projects,
            description="Projects you belong to, with your role. Give `project` (slug) for one "
            "project with its members.",
            annotations=READ_ONLY,
        ),
        make_tool(
            list_workers,
            description="Workers (humans and agents) and their handles, for assign_task and "
            "delegate_task. Give `handle` for one worker, `type` (human/agent) for one kind.",
            annotations=READ_ONLY,
        ),
        make_tool(
            manage_project,
            description="Projects and membership, by action: create (project=new slug, name), "
            "update, delete (with all its tasks), add_member / change_role (handle, role), "
            "remove_member (handle).",
            annotations=DESTRUCTIVE,
        ),
        make_tool(
            manage_agents,
            description="Agents and their API keys, by action: register (new agent handle, "
            "name; returns its first key), create_key, list_keys, revoke_key (key_id), "
            "rotate_key (key_id), deactivate (revokes all keys), reactivate (new key). A new "
            "key is shown only once.",
            annotations=DESTRUCTIVE,
        ),
    ]

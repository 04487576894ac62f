"""Who and where: the caller, workers, projects and members, agents and their API keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import AgentType, WorkerType
from taskflow.core.schemas import (
    DueDate,
    Handle,
    MeOut,
    RegisterAgent,
    WorkerFilter,
)
from taskflow.core.services import workers
from taskflow.mcp_server.outputs import AgentResult, WorkersOut
from taskflow.mcp_server.toolkit import (
    DESTRUCTIVE,
    READ_ONLY,
    IdempotencyKey,
    Surface,
    check_action,
    make_tool,
    require,
    sent,
)

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
    """The identity and worker tools of one server (projects are generated from declarations)."""
    db = s.db

    async def whoami(ctx: Context) -> MeOut:
        return await s.read(ctx, lambda actor: workers.whoami(db, actor))  # type: ignore[return-value]

    async def list_workers(
        ctx: Context, handle: OptionalHandle = None, type: WorkerType | None = None
    ) -> WorkersOut:
        async def op(actor: Actor) -> WorkersOut:
            if handle is None:
                found = await workers.list_workers(db, actor, WorkerFilter(type=type))
                return WorkersOut(workers=found)
            return WorkersOut(workers=[await workers.get_worker(db, actor, handle)])

        return await s.read(ctx, op)  # type: ignore[return-value]

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
            list_workers,
            description="Workers (humans and agents) and their handles, for assign_task and "
            "delegate_task. Give `handle` for one worker, `type` (human/agent) for one kind.",
            annotations=READ_ONLY,
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

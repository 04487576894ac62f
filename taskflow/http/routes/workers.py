"""Workers (humans and agents) and agents' API keys."""

from __future__ import annotations

from taskflow.core.schemas import (
    AgentDeactivated,
    ApiKeyOut,
    IssuedKey,
    MeOut,
    RegisterAgent,
    WorkerFilter,
    WorkerOut,
)
from taskflow.core.services import workers
from taskflow.http.bodies import NewApiKey
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("workers")


@endpoints.get("/api/me", operation="whoami", response=MeOut)
async def whoami(call: Call) -> MeOut:
    """Your own worker record: who this token acts as.

    Only here do you see your own `email` and `sso_subject` (null for agents); other workers'
    records never carry them.
    """
    return await workers.whoami(call.db, call.actor)


@endpoints.get(
    "/api/workers", operation="list_workers", query=WorkerFilter, response=list[WorkerOut]
)
async def list_workers(call: Call) -> list[WorkerOut]:
    """List every worker, human and agent, by handle (`?type=agent` or `?type=human`: one kind)."""
    return await workers.list_workers(call.db, call.actor, call.query)


@endpoints.post(
    "/api/workers/agents",
    operation="register_agent",
    body=RegisterAgent,
    response=IssuedKey,
    status=201,
)
async def register_agent(call: Call) -> IssuedKey:
    """Register an AI agent and get its first API key.

    The key (`api_key`, starting with tf_) is shown only in this answer: store it now. You can
    later list, revoke and rotate the agent's keys.
    """
    return await workers.register_agent(call.db, call.actor, call.body)


@endpoints.get("/api/workers/{handle}", operation="get_worker", response=WorkerOut)
async def get_worker(call: Call) -> WorkerOut:
    """Read one worker by handle."""
    return await workers.get_worker(call.db, call.actor, call.path["handle"])


@endpoints.get("/api/workers/{handle}/keys", operation="list_api_keys", response=list[ApiKeyOut])
async def list_api_keys(call: Call) -> list[ApiKeyOut]:
    """List an agent's API keys (never the keys themselves: only their prefixes)."""
    return await workers.list_api_keys(call.db, call.actor, call.path["handle"])


@endpoints.post(
    "/api/workers/{handle}/keys",
    operation="create_api_key",
    body=NewApiKey,
    response=IssuedKey,
    status=201,
)
async def create_api_key(call: Call) -> IssuedKey:
    """Issue another API key for an agent (the agent itself or whoever registered it)."""
    body: NewApiKey = call.body
    return await workers.create_api_key(
        call.db, call.actor, call.path["handle"], body.name, body.expires_at
    )


@endpoints.post(
    "/api/workers/{handle}/keys/{key_id}/revoke", operation="revoke_api_key", response=ApiKeyOut
)
async def revoke_api_key(call: Call) -> ApiKeyOut:
    """Revoke an API key at once; requests with it then get 401."""
    return await workers.revoke_api_key(
        call.db, call.actor, call.path["handle"], call.path["key_id"]
    )


@endpoints.post(
    "/api/workers/{handle}/keys/{key_id}/rotate",
    operation="rotate_api_key",
    response=IssuedKey,
    status=201,
)
async def rotate_api_key(call: Call) -> IssuedKey:
    """Replace an API key with a new one in one step (the old one stops working)."""
    return await workers.rotate_api_key(
        call.db, call.actor, call.path["handle"], call.path["key_id"]
    )


@endpoints.post(
    "/api/workers/{handle}/deactivate", operation="deactivate_agent", response=AgentDeactivated
)
async def deactivate_agent(call: Call) -> AgentDeactivated:
    """Deactivate an agent: all its keys are revoked and it can no longer be assigned or claim.

    Its history and its current assignments stay. Deactivating it again changes nothing.
    Allowed to the agent itself and to whoever registered it.
    """
    return await workers.deactivate_agent(call.db, call.actor, call.path["handle"])


@endpoints.post(
    "/api/workers/{handle}/reactivate",
    operation="reactivate_agent",
    body=NewApiKey,
    response=IssuedKey,
    status=201,
)
async def reactivate_agent(call: Call) -> IssuedKey:
    """Reactivate a deactivated agent and issue it a new API key, shown only in this answer."""
    body: NewApiKey = call.body
    return await workers.reactivate_agent(
        call.db, call.actor, call.path["handle"], body.name, body.expires_at
    )

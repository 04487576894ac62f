"""Workers and agents' API keys, called the pre-kernel way: `(db, actor, ...)`.

The operations live in `taskflow.core.handlers.workers`, declared once and run by the dispatcher
in one unit of work. These wrappers keep the tests' and the demo's calls working; each builds
the command and dispatches it. `key_use_is_stale` is authentication's bookkeeping of key use,
not an operation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import make_command
from taskflow.core.dispatcher import run
from taskflow.core.handlers import workers as ops
from taskflow.core.schemas import (
    AgentDeactivated,
    ApiKeyOut,
    CreateHuman,
    IssuedKey,
    MeOut,
    RegisterAgent,
    WorkerFilter,
    WorkerOut,
)
from taskflow.core.uow import UnitOfWork

"""How often a key's `last_used_at` is written: at most once per this much use."""


async def create_human(db: Database, cmd: CreateHuman, actor: Actor | None = None) -> WorkerOut:
    """A human in a transaction of its own (tests, the demo): humans have no surface operation,
    and one with no actor is its own, so there is no dispatcher call to make."""
    async with db.transaction() as session:
        return ops.worker_out(await ops.create_human(cmd, UnitOfWork(session), actor))


async def whoami(db: Database, actor: Actor) -> MeOut:
    return await run(db, actor, make_command(ops.WhoAmI))


async def list_workers(
    db: Database, actor: Actor, filters: WorkerFilter | None = None
) -> list[WorkerOut]:
    sent = filters.model_dump(exclude_unset=True) if filters is not None else {}
    return await run(db, actor, make_command(ops.ListWorkers, **sent))


async def get_worker(db: Database, actor: Actor, handle: str) -> WorkerOut:
    return await run(db, actor, make_command(ops.GetWorker, handle=handle))


async def register_agent(db: Database, actor: Actor, cmd: RegisterAgent) -> IssuedKey:
    return await run(db, actor, cmd)


async def create_api_key(
    db: Database,
    actor: Actor,
    handle: str,
    name: str = "default",
    expires_at: datetime | None = None,
    **scopes: Any,
) -> IssuedKey:
    """`scopes`: `read_only`, `projects` (slugs), `manage_agents` (`schemas.KeyScopes`)."""
    command = make_command(
        ops.CreateApiKey, handle=handle, name=name, expires_at=expires_at, **scopes
    )
    return await run(db, actor, command)


async def list_api_keys(db: Database, actor: Actor, handle: str) -> list[ApiKeyOut]:
    return await run(db, actor, make_command(ops.ListApiKeys, handle=handle))


async def revoke_api_key(db: Database, actor: Actor, handle: str, key_id: int) -> ApiKeyOut:
    return await run(db, actor, make_command(ops.RevokeApiKey, handle=handle, key_id=key_id))


async def rotate_api_key(
    db: Database, actor: Actor, handle: str, key_id: int, **scopes: Any
) -> IssuedKey:
    command = make_command(ops.RotateApiKey, handle=handle, key_id=key_id, **scopes)
    return await run(db, actor, command)


async def deactivate_agent(db: Database, actor: Actor, handle: str) -> AgentDeactivated:
    return await run(db, actor, make_command(ops.DeactivateAgent, handle=handle))


async def reactivate_agent(
    db: Database,
    actor: Actor,
    handle: str,
    name: str = "default",
    expires_at: datetime | None = None,
) -> IssuedKey:
    command = make_command(ops.ReactivateAgent, handle=handle, name=name, expires_at=expires_at)
    return await run(db, actor, command)

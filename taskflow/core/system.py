"""The `@system` worker: who the server's housekeeping acts as.

Reminders (`due_soon`, `overdue`) and the switching off of a failing webhook are changes nobody
asked for at that moment, yet each is audited like any other, by this worker. It is an agent
(`agent_type` custom) with no API key, created the first time housekeeping needs it, in that
transaction, writing its own `created` entry as a first sign-in does. Its handle is reserved
(`domain.RESERVED_HANDLES`): no one can register or sign in as it.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.domain import SYSTEM_HANDLE, AgentType, AuditAction, Via, WorkerType
from taskflow.core.models import Worker

SYSTEM_NAME = "TaskFlow housekeeping"
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('taskflow:system-worker'))")


def _actor(worker_id: int) -> Actor:
    return Actor(worker_id=worker_id, handle=SYSTEM_HANDLE, type=WorkerType.AGENT, via=Via.CORE)


async def system_actor(session: AsyncSession) -> Actor:
    """The `@system` actor, its worker created (and audited) in this transaction if missing."""
    find = select(Worker.id).where(Worker.handle == SYSTEM_HANDLE)
    worker_id = await session.scalar(find)
    if worker_id is not None:
        return _actor(worker_id)
    await session.execute(_LOCK)  # two replicas' first housekeeping: one creates it
    worker_id = await session.scalar(find)
    if worker_id is not None:
        return _actor(worker_id)
    worker = Worker(
        handle=SYSTEM_HANDLE,
        name=SYSTEM_NAME,
        type=WorkerType.AGENT.value,
        agent_type=AgentType.CUSTOM.value,
        capabilities=[],
    )
    session.add(worker)
    await session.flush()
    actor = _actor(worker.id)
    await audit.record(
        session,
        actor,
        entity_type="worker",
        entity_id=worker.id,
        action=AuditAction.CREATED,
        details={"new": {"handle": SYSTEM_HANDLE, "name": SYSTEM_NAME, "type": "agent"}},
    )
    return actor

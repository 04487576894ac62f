"""Workers (humans and agents), agents' API keys, and deactivating and reactivating agents.

Agents are first-class: any worker may register an agent, and the agent itself or whoever
registered it may manage it: its keys, and whether it is active. A key is returned once and
stored only as its SHA-256. A worker's email and SSO subject are shown to that worker only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.auth.keys import generate_api_key, hash_api_key
from taskflow.core.db import Database
from taskflow.core.domain import AgentType, AuditAction, Via, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from taskflow.core.models import ApiKey, Worker
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
from taskflow.core.services.access import worker_by_handle

ENTITY = "worker"
_Row = TypeVar("_Row", Worker, ApiKey)
_MINUTE = timedelta(minutes=1)


def _public_fields(worker: Worker) -> dict[str, object]:
    """What any worker may see of another: never the email or SSO subject."""
    return {
        "id": worker.id,
        "handle": worker.handle,
        "name": worker.name,
        "type": WorkerType(worker.type),
        "agent_type": AgentType(worker.agent_type) if worker.agent_type else None,
        "capabilities": list(worker.capabilities or []),
        "created_at": worker.created_at,
        "active": worker.deactivated_at is None,
        "deactivated_at": worker.deactivated_at,
    }


def worker_out(worker: Worker) -> WorkerOut:
    return WorkerOut.model_validate(_public_fields(worker))


def me_out(worker: Worker) -> MeOut:
    """The caller's own record, with its personal data (for whoami only)."""
    return MeOut.model_validate(
        {**_public_fields(worker), "email": worker.email, "sso_subject": worker.sso_subject}
    )


def key_out(key: ApiKey, handle: str) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        worker=handle,
        name=key.name,
        display_prefix=key.display_prefix,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def actor_for(worker: Worker, **kwargs: object) -> Actor:
    """The actor a worker becomes once authenticated (surfaces add `via` and request id)."""
    return Actor(worker_id=worker.id, handle=worker.handle, type=WorkerType(worker.type), **kwargs)  # type: ignore[arg-type]


async def _saved(session: AsyncSession, row: _Row) -> _Row:
    """Insert a row and read it back, so server defaults (id, created_at) are there to audit."""
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def _refuse_taken(session: AsyncSession, handle: str) -> None:
    if await session.scalar(select(Worker.id).where(Worker.handle == handle)) is not None:
        raise Conflict(f"the handle {handle} is taken: choose another", field="handle")


async def insert_human(
    session: AsyncSession,
    cmd: CreateHuman,
    actor: Actor | None = None,
    *,
    via: Via = Via.CORE,
    request_id: str | None = None,
) -> Worker:
    """Create a human inside an open transaction; the new human is its own actor if none given.

    `via` and `request_id` describe that self-actor (a first sign-in through a surface), so the
    `created` entry names the surface the human arrived through; a given `actor` carries its own.
    """
    await _refuse_taken(session, cmd.handle)
    worker = await _saved(
        session,
        Worker(
            handle=cmd.handle,
            name=cmd.name,
            type=WorkerType.HUMAN.value,
            email=cmd.email,
            sso_subject=cmd.sso_subject,
            created_by_id=actor.worker_id if actor else None,
            capabilities=[],
        ),
    )
    by = actor or actor_for(worker, via=via, request_id=request_id)
    await audit.record(
        session,
        by,
        entity_type=ENTITY,
        entity_id=worker.id,
        action=AuditAction.CREATED,
        # No email or SSO subject: every worker can read project-less entries, and the log is
        # append-only, so personal data written here could never be erased.
        details={"new": cmd.model_dump(mode="json", exclude={"sso_subject", "email"})},
    )
    return worker


async def create_human(db: Database, cmd: CreateHuman, actor: Actor | None = None) -> WorkerOut:
    async with db.transaction() as session:
        return worker_out(await insert_human(session, cmd, actor))


async def _issue_key(
    session: AsyncSession,
    actor: Actor,
    agent: Worker,
    name: str,
    expires_at: datetime | None,
) -> IssuedKey:
    """Create, audit and return a new key for `agent`: the only time the full key is seen."""
    expires_at = _future_expiry(expires_at)
    full_key, display = generate_api_key()
    key = await _saved(
        session,
        ApiKey(
            worker_id=agent.id,
            key_hash=hash_api_key(full_key),
            display_prefix=display,
            name=name,
            created_by_id=actor.worker_id,
            expires_at=expires_at,
        ),
    )
    await audit.record(
        session,
        actor,
        entity_type="api_key",
        entity_id=key.id,
        action=AuditAction.API_KEY_CREATED,
        details={"agent": agent.handle, "name": name, "prefix": display, "expires_at": expires_at},
    )
    return IssuedKey(worker=worker_out(agent), api_key=full_key, key=key_out(key, agent.handle))


def _future_expiry(expires_at: datetime | None) -> datetime | None:
    """A key born expired is useless and hides a typo (a wrong year): refuse it. Naive = UTC."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= datetime.now(UTC):
        raise ValidationFailed(
            f"expires_at {expires_at.isoformat()} is in the past: give a future date-time, "
            "or none for a key that does not expire",
            field="expires_at",
        )
    return expires_at


async def register_agent(db: Database, actor: Actor, cmd: RegisterAgent) -> IssuedKey:
    async with db.transaction() as session:
        return await insert_agent(session, actor, cmd)


async def insert_agent(session: AsyncSession, actor: Actor, cmd: RegisterAgent) -> IssuedKey:
    """Register an agent and issue its first key inside an open transaction."""
    await _refuse_taken(session, cmd.handle)
    agent = await _saved(
        session,
        Worker(
            handle=cmd.handle,
            name=cmd.name,
            type=WorkerType.AGENT.value,
            agent_type=cmd.agent_type.value,
            capabilities=cmd.capabilities,
            created_by_id=actor.worker_id,
        ),
    )
    await audit.record(
        session,
        actor,
        entity_type=ENTITY,
        entity_id=agent.id,
        action=AuditAction.AGENT_REGISTERED,
        details={"new": cmd.model_dump(mode="json", exclude={"expires_at"})},
    )
    return await _issue_key(session, actor, agent, "default", cmd.expires_at)


async def list_workers(
    db: Database, actor: Actor, filters: WorkerFilter | None = None
) -> list[WorkerOut]:
    """Every worker by handle, deactivated ones included (their history stays theirs)."""
    stmt = select(Worker).order_by(Worker.handle)
    if filters is not None and filters.type is not None:
        stmt = stmt.where(Worker.type == filters.type.value)
    async with db.transaction() as session:
        workers = (await session.scalars(stmt)).all()
    return [worker_out(w) for w in workers]


async def get_worker(db: Database, actor: Actor, handle: str) -> WorkerOut:
    async with db.transaction() as session:
        return worker_out(await worker_by_handle(session, handle))


async def _managed_agent(
    session: AsyncSession,
    actor: Actor,
    handle: str,
    *,
    verb: str = "manage its keys",
    human: str = "API keys are for agents; humans sign in",
    lock: bool = False,
) -> Worker:
    """An agent is managed (its keys, its deactivation) by itself or by whoever registered it.

    `verb` and `human` word the refusals for the operation at hand; `lock` takes the agent's row
    so deactivation and reactivation of one agent run one at a time.
    """
    agent = await worker_by_handle(session, handle, for_update=lock)
    if agent.type != WorkerType.AGENT.value:
        raise Conflict(f"{handle} is a human: {human}")
    if actor.worker_id not in (agent.id, agent.created_by_id):
        raise Forbidden(f"only {handle} itself or the worker who registered it can {verb}")
    return agent


def _refuse_deactivated(agent: Worker) -> None:
    """A deactivated agent gets no new key except through reactivation, which says so."""
    if agent.deactivated_at is not None:
        raise Conflict(
            f"{agent.handle} is deactivated: reactivate it (reactivate_agent / `taskflow agent "
            "reactivate`), which issues a new key"
        )


async def create_api_key(
    db: Database,
    actor: Actor,
    handle: str,
    name: str = "default",
    expires_at: datetime | None = None,
) -> IssuedKey:
    async with db.transaction() as session:
        agent = await _managed_agent(session, actor, handle)
        _refuse_deactivated(agent)
        return await _issue_key(session, actor, agent, name, expires_at)


async def list_api_keys(db: Database, actor: Actor, handle: str) -> list[ApiKeyOut]:
    async with db.transaction() as session:
        agent = await _managed_agent(session, actor, handle)
        keys = (
            await session.scalars(
                select(ApiKey).where(ApiKey.worker_id == agent.id).order_by(ApiKey.id)
            )
        ).all()
    return [key_out(k, handle) for k in keys]


async def _revoke(session: AsyncSession, actor: Actor, agent: Worker, key_id: int) -> ApiKey:
    """Revoke one key of an agent the caller manages (`_managed_agent` already checked)."""
    key = await session.get(ApiKey, key_id, with_for_update=True)
    if key is None or key.worker_id != agent.id:
        raise NotFound(
            f"{agent.handle} has no API key {key_id}: list its keys for ids", entity="api_key"
        )
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked")
    key.revoked_at = datetime.now(UTC)
    await audit.record(
        session,
        actor,
        entity_type="api_key",
        entity_id=key.id,
        action=AuditAction.API_KEY_REVOKED,
        details={"agent": agent.handle, "prefix": key.display_prefix},
    )
    return key


async def revoke_api_key(db: Database, actor: Actor, handle: str, key_id: int) -> ApiKeyOut:
    async with db.transaction() as session:
        agent = await _managed_agent(session, actor, handle)
        return key_out(await _revoke(session, actor, agent, key_id), handle)


async def rotate_api_key(db: Database, actor: Actor, handle: str, key_id: int) -> IssuedKey:
    """A new key replaces the old one in one transaction: never zero keys, never two live ones."""
    async with db.transaction() as session:
        agent = await _managed_agent(session, actor, handle)
        _refuse_deactivated(agent)
        old = await _revoke(session, actor, agent, key_id)
        if old.expires_at is not None and old.expires_at <= datetime.now(UTC):
            raise Conflict(  # rolls the revocation back: nothing changes
                f"API key {key_id} expired at {old.expires_at.isoformat()}: a rotated key keeps "
                "its expiry, so create a new key with a new expiry instead (create_api_key)"
            )
        return await _issue_key(session, actor, agent, old.name, old.expires_at)


def key_use_is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Is a key's recorded last use older than a minute (so `touch_key` would write)?

    Authentication checks this on the row it already read and skips the UPDATE round trip
    on most requests; `touch_key` re-checks in SQL, so concurrent requests still write once.
    """
    return last_used_at is None or last_used_at < now - _MINUTE


async def touch_key(session: AsyncSession | AsyncConnection, key_id: int) -> None:
    """Record use at most once a minute, so authentication does not write on every request."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < datetime.now(UTC) - _MINUTE)
        )
        .values(last_used_at=datetime.now(UTC))
    )


async def whoami(db: Database, actor: Actor) -> MeOut:
    """The caller's own worker record, with its own email and SSO subject when known."""
    async with db.transaction() as session:
        return me_out(await worker_by_handle(session, actor.handle))


_HUMANS_STAY = "only agents can be deactivated; a human's access ends at the auth server"


async def deactivate_agent(db: Database, actor: Actor, handle: str) -> AgentDeactivated:
    """Switch an agent off: every key revoked, no sign-in, claims or new tasks; history stays.

    Tasks already assigned to it stay assigned (reassign them with assign). Deactivating an
    agent that already is changes nothing and writes nothing, so a retry is harmless.
    """
    async with db.transaction() as session:
        agent = await _managed_agent(
            session, actor, handle, verb="deactivate it", human=_HUMANS_STAY, lock=True
        )
        if agent.deactivated_at is not None:
            return AgentDeactivated(worker=worker_out(agent), changed=False)
        now = datetime.now(UTC)
        keys = (
            await session.scalars(
                select(ApiKey)
                .where(ApiKey.worker_id == agent.id, ApiKey.revoked_at.is_(None))
                .order_by(ApiKey.id)
                .with_for_update()
            )
        ).all()
        for key in keys:
            key.revoked_at = now
        agent.deactivated_at = now
        # One entry for the whole switch-off: the revoked keys are named in it, so the key
        # history reads "revoked by deactivation" rather than as separate, unexplained acts.
        await audit.record(
            session,
            actor,
            entity_type=ENTITY,
            entity_id=agent.id,
            action=AuditAction.AGENT_DEACTIVATED,
            details={
                "agent": handle,
                "revoked_keys": [{"id": k.id, "prefix": k.display_prefix} for k in keys],
            },
        )
        await session.flush()
        return AgentDeactivated(
            worker=worker_out(agent),
            changed=True,
            revoked_keys=[key_out(k, handle) for k in keys],
        )


async def reactivate_agent(
    db: Database,
    actor: Actor,
    handle: str,
    name: str = "default",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Switch a deactivated agent back on with a new key (its old keys stay revoked)."""
    async with db.transaction() as session:
        agent = await _managed_agent(
            session, actor, handle, verb="reactivate it", human=_HUMANS_STAY, lock=True
        )
        if agent.deactivated_at is None:
            raise Conflict(
                f"{handle} is active: there is nothing to reactivate (create_api_key / "
                "`taskflow agent new-key` issues another key)"
            )
        agent.deactivated_at = None
        await audit.record(
            session,
            actor,
            entity_type=ENTITY,
            entity_id=agent.id,
            action=AuditAction.AGENT_REACTIVATED,
            details={"agent": handle},
        )
        return await _issue_key(session, actor, agent, name, expires_at)

"""Workers (humans and agents), agents' API keys, deactivation: commands, handlers, declarations.

Agents are first-class: any worker may register an agent, and the agent itself, whoever
registered it (and on up that chain), and the owners of its projects manage it: its keys, and
whether it is active (`access.manages`). A key has scopes (`taskflow.core.scopes`): minting
keys and agents needs `manage_agents`, a new key is never wider than the key that made it,
and quotas (settings) bound how many agents a worker registers and how many keys an agent
holds. A key is answered once
(`IssuedKey`) and stored only as its SHA-256; an idempotent retry replays that answer only to
the worker that made the first call, since idempotency records are kept per worker. A worker's
email and SSO subject are shown to that worker only (`whoami`).

Humans are not created through a surface operation: they arrive at their first sign-in
(`taskflow.core.auth.identity`), with `init`, or with `worker add` (`services.onboarding`), each
calling `create_human` with the unit of work it holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeVar

from pydantic import Field
from sqlalchemy import func, select

from taskflow.core import schemas
from taskflow.core.actor import Actor
from taskflow.core.auth.keys import generate_api_key, hash_api_key
from taskflow.core.config import Settings
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import RESERVED_HANDLES, AgentType, AuditAction, Via, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NextStep, NotFound, ValidationFailed
from taskflow.core.models import ApiKey, Project, Worker
from taskflow.core.schemas import (
    AgentDeactivated,
    ApiKeyOut,
    CreateHuman,
    DueDate,
    Handle,
    IssuedKey,
    KeyScopes,
    MeOut,
    Model,
    Name,
    RegisterAgent,
    WorkerOut,
)
from taskflow.core.scopes import MANAGE_AGENTS, Scopes, refuse_unmanaging
from taskflow.core.services.access import (
    count_registered_down,
    lineages,
    managed_ids,
    manages,
    project_with_role,
    worker_by_handle,
)
from taskflow.core.uow import UnitOfWork

ENTITY = "worker"
CORE = "core"  # who am I: the first call of every session
READS = "directory"  # who else is there: for assigning and delegating
ADMIN = "admin"  # registering agents, their keys, switching them off and on
KeyId = Annotated[int, Field(ge=1, description="The key's id, from list_api_keys")]
_Row = TypeVar("_Row", Worker, ApiKey)


class WhoAmI(Model):
    pass


class ListWorkers(schemas.WorkerFilter):
    managed: bool = Field(
        default=False,
        description="Only agents you manage (registered down from you, or in projects you own)",
    )


class GetWorker(Model):
    handle: Handle


class CreateApiKey(KeyScopes):
    handle: Handle
    name: Name = Field(default="default", description="A label for the key")
    expires_at: DueDate = None


class ListApiKeys(Model):
    handle: Handle


class RevokeApiKey(Model):
    handle: Handle
    key_id: KeyId


class RotateApiKey(Model):
    handle: Handle
    key_id: KeyId
    read_only: bool | None = Field(default=None, description="null: as the old key")
    projects: list[schemas.Slug] | None = Field(
        default=None, max_length=100, description="null: as the old key"
    )
    manage_agents: bool | None = Field(default=None, description="null: as the old key")


class DeactivateAgent(Model):
    handle: Handle


class ReactivateAgent(KeyScopes):
    handle: Handle
    name: Name = Field(default="default", description="A label for the new key")
    expires_at: DueDate = None


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


def key_out(key: ApiKey, handle: str, slugs: dict[int, str] | None = None) -> ApiKeyOut:
    """A key as listed: never the key itself; its scopes with project slugs (`slugs`)."""
    projects = None
    if key.project_ids is not None:
        named = slugs or {}
        projects = sorted(named.get(p, str(p)) for p in key.project_ids)
    return ApiKeyOut(
        read_only=key.read_only,
        projects=projects,
        manage_agents=key.manage_agents,
        id=key.id,
        worker=handle,
        name=key.name,
        display_prefix=key.display_prefix,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def actor_for(worker: Worker, *, via: Via = Via.CORE, request_id: str | None = None) -> Actor:
    """The actor a worker becomes once known (surfaces add `via` and the request id)."""
    return Actor(
        worker_id=worker.id,
        handle=worker.handle,
        type=WorkerType(worker.type),
        via=via,
        request_id=request_id,
    )


async def _saved(uow: UnitOfWork, row: _Row) -> _Row:
    """Insert a row and read it back, so server defaults (id, created_at) are there to audit."""
    uow.session.add(row)
    await uow.session.flush()
    await uow.session.refresh(row)
    return row


async def _refuse_taken(uow: UnitOfWork, handle: str) -> None:
    if handle in RESERVED_HANDLES:
        raise Conflict(f"the handle {handle} is reserved for TaskFlow itself: choose another")
    if await uow.session.scalar(select(Worker.id).where(Worker.handle == handle)) is not None:
        raise Conflict(f"the handle {handle} is taken: choose another", field="handle")


async def create_human(
    cmd: CreateHuman,
    uow: UnitOfWork,
    actor: Actor | None = None,
    *,
    via: Via = Via.CORE,
    request_id: str | None = None,
) -> Worker:
    """Create a human in the caller's unit of work; without an `actor` the human is its own.

    A first sign-in and `init` have no actor yet: the new human writes its own `created` entry,
    through the surface it arrived by (`via`, `request_id`). `worker add` passes its caller.
    """
    await _refuse_taken(uow, cmd.handle)
    worker = await _saved(
        uow,
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
    await uow.record(
        actor or actor_for(worker, via=via, request_id=request_id),
        entity_type=ENTITY,
        entity_id=worker.id,
        action=AuditAction.CREATED,
        # No email or SSO subject: every worker can read project-less entries, and the log is
        # append-only, so personal data written here could never be erased.
        details={"new": cmd.model_dump(mode="json", exclude={"sso_subject", "email"})},
    )
    return worker


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


async def slugs_of(uow: UnitOfWork, ids: list[int] | None) -> dict[int, str]:
    if not ids:
        return {}
    rows = await uow.session.execute(select(Project.id, Project.slug).where(Project.id.in_(ids)))
    return {pid: slug for pid, slug in rows}


async def key_scopes(
    uow: UnitOfWork,
    actor: Actor,
    read_only: bool,
    projects: list[str] | None,
    manage: bool,
    *,
    kept: frozenset[int] | None = None,
) -> Scopes:
    """The scopes of a key the actor issues: never wider than the actor's own key. Projects
    are named by slug, each one the actor can see (else "not found", as anywhere); none named
    keeps `kept` (a rotated key's). A key limited to projects makes keys limited to those (or
    to some of them)."""
    ids: set[int] | None = None if kept is None else set(kept)
    if projects is not None:
        ids = set()
        for slug in projects:
            project, _ = await project_with_role(uow.session, actor, slug)
            ids.add(project.id)
    mine = actor.scopes.project_ids
    if mine is not None:
        if ids is None:
            ids = set(mine)
        else:
            ids &= mine  # named ones the key cannot see were refused above
    return Scopes(
        read_only=read_only,
        project_ids=None if ids is None else frozenset(ids),
        manage_agents=manage,
    )


def _quota(setting: str) -> int:
    """A quota setting, read afresh (from the environment and `.env`) at each registration or
    key issuance: they are rare, and a changed quota then applies without a restart."""
    return int(getattr(Settings(), setting))


async def _refuse_key_over_quota(uow: UnitOfWork, agent: Worker) -> None:
    """An agent holds at most TASKFLOW_MAX_KEYS_PER_AGENT live keys (its row is locked by the
    caller, so two concurrent requests cannot both squeeze in)."""
    limit = _quota("taskflow_max_keys_per_agent")
    live = await uow.session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(
            ApiKey.worker_id == agent.id,
            ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > func.now()),
        )
    )
    if (live or 0) >= limit:
        raise Forbidden(
            f"{agent.handle} already holds {live} live API keys, the most an agent may "
            f"(TASKFLOW_MAX_KEYS_PER_AGENT={limit}): revoke one first",
            next_step=NextStep("list_api_keys", {"handle": agent.handle}),
            quota="max_keys_per_agent",
        )


async def _refuse_agent_over_quota(uow: UnitOfWork, actor: Actor) -> None:
    """A worker has at most TASKFLOW_MAX_AGENTS_PER_WORKER active agents registered, counting
    those its agents registered, down the chain: sub-agents registering sub-agents cannot
    multiply the quota. Every worker up the registrant's chain is checked, their rows locked
    first (in id order), so a burst of concurrent registrations is counted one at a time."""
    limit = _quota("taskflow_max_agents_per_worker")
    chain = [w for w, _ in (await lineages(uow.session, [actor.worker_id]))[actor.worker_id]]
    rows = await uow.session.execute(
        select(Worker.id, Worker.handle)
        .where(Worker.id.in_(chain))
        .order_by(Worker.id)
        .with_for_update()
    )
    handles = {worker_id: handle for worker_id, handle in rows}
    for worker_id in chain:
        active = await count_registered_down(uow.session, worker_id)
        if active >= limit:
            who = handles[worker_id]
            raise Forbidden(
                f"{who} already has {active} active agents registered (by it or down its "
                f"chain), the most one worker may (TASKFLOW_MAX_AGENTS_PER_WORKER={limit}): "
                "deactivate one first",
                next_step=NextStep("list_workers", {"managed": True}),
                quota="max_agents_per_worker",
            )


async def _issue_key(
    uow: UnitOfWork,
    actor: Actor,
    agent: Worker,
    name: str,
    expires_at: datetime | None,
    scopes: Scopes,
) -> IssuedKey:
    """Create, audit and return a new key for `agent`: the only time the full key is seen."""
    expires_at = _future_expiry(expires_at)
    await _refuse_key_over_quota(uow, agent)
    full_key, display = generate_api_key()
    key = await _saved(
        uow,
        ApiKey(
            worker_id=agent.id,
            key_hash=hash_api_key(full_key),
            display_prefix=display,
            name=name,
            created_by_id=actor.worker_id,
            expires_at=expires_at,
            read_only=scopes.read_only,
            project_ids=scopes.listed(),
            manage_agents=scopes.manage_agents,
        ),
    )
    slugs = await slugs_of(uow, key.project_ids)
    listed = key_out(key, agent.handle, slugs)
    await uow.record(
        actor,
        entity_type="api_key",
        entity_id=key.id,
        action=AuditAction.API_KEY_CREATED,
        details={
            "agent": agent.handle,
            "name": name,
            "prefix": display,
            "expires_at": expires_at,
            "read_only": listed.read_only,
            "projects": listed.projects,
            MANAGE_AGENTS: listed.manage_agents,
        },
    )
    return IssuedKey(worker=worker_out(agent), api_key=full_key, key=listed)


async def _managed_agent(
    uow: UnitOfWork,
    actor: Actor,
    handle: str,
    *,
    verb: str = "manage its keys",
    human: str = "API keys are for agents; humans sign in",
    lock: bool = False,
    mint: bool = False,
) -> Worker:
    """An agent is seen and stopped (its keys listed and revoked, it deactivated) by itself,
    by whoever registered it and on up that chain, and by the owners of its chain's projects
    (`access.manages`); a new key for it (`mint`: create, rotate, reactivate) only comes from
    itself or its own registrant, so no one up the chain or owning a project can obtain a
    working key for an agent that is not theirs to act as.

    `verb` and `human` word the refusals for the operation at hand; `lock` takes the agent's row
    so deactivation, reactivation and key issuance for one agent run one at a time.
    """
    agent = await worker_by_handle(uow.session, handle, for_update=lock)
    if agent.type != WorkerType.AGENT.value:
        raise Conflict(f"{handle} is a human: {human}")
    if actor.worker_id in (agent.id, agent.created_by_id):
        return agent
    if not await manages(uow.session, actor, agent):
        raise Forbidden(
            f"only {handle} itself or the worker who registered it can {verb} (or whoever "
            "registered that worker, or an owner of a project it is in)"
        )
    if mint:
        raise Forbidden(
            f"only {handle} itself or the worker who registered it can {verb}: you manage it "
            "from further up (list, revoke or deactivate it), which issues no keys"
        )
    return agent


def _refuse_deactivated(agent: Worker) -> None:
    """A deactivated agent gets no new key except through reactivation, which says so."""
    if agent.deactivated_at is not None:
        raise Conflict(
            f"{agent.handle} is deactivated: reactivate it, which issues a new key",
            next_step=NextStep("reactivate_agent", {"handle": agent.handle}),
        )


@declare(
    WhoAmI,
    toolset=CORE,
    read_only=True,
    mcp="whoami",
    rest=Route("GET", "/api/me"),
    cli="whoami",
)
async def whoami(cmd: WhoAmI, uow: UnitOfWork, actor: Actor) -> MeOut:
    """Your own worker record: handle, human or agent, and your own email and SSO subject if known.

    Only here does a worker see its own `email` and `sso_subject` (null for agents); other
    workers' records never carry them.
    """
    return me_out(await worker_by_handle(uow.session, actor.handle))


@declare(
    ListWorkers,
    toolset=READS,
    read_only=True,
    mcp="list_workers",
    rest=Route("GET", "/api/workers"),
    cli="worker list",
)
async def list_workers(cmd: ListWorkers, uow: UnitOfWork, actor: Actor) -> list[WorkerOut]:
    """List workers (humans and agents) by handle, for assigning and delegating; `type`: one kind.

    Deactivated workers are listed too: their history stays theirs. `managed`: only the agents
    you manage, down every chain of registrations (to see, and revoke, what they made).
    """
    stmt = select(Worker).order_by(Worker.handle)
    if cmd.managed:
        stmt = stmt.where(Worker.id.in_(await managed_ids(uow.session, actor)))
    if cmd.type is not None:
        stmt = stmt.where(Worker.type == cmd.type.value)
    return [worker_out(w) for w in await uow.session.scalars(stmt)]


@declare(
    RegisterAgent,
    toolset=ADMIN,
    mcp="register_agent",
    rest=Route("POST", "/api/workers/agents", 201),
    cli="agent register",
)
async def register_agent(cmd: RegisterAgent, uow: UnitOfWork, actor: Actor) -> IssuedKey:
    """Register an AI agent and get its first API key (tf_...), shown only in this answer.

    You then manage the agent's keys and whether it is active, as does the agent itself. Its
    key gets the scopes asked for (`read_only`, `projects`, `manage_agents`), never more than
    yours; a worker may have TASKFLOW_MAX_AGENTS_PER_WORKER active agents registered.
    """
    refuse_unmanaging(actor.scopes, actor.key_prefix, "registering an agent")
    scopes = await key_scopes(uow, actor, cmd.read_only, cmd.projects, cmd.manage_agents)
    await _refuse_agent_over_quota(uow, actor)
    await _refuse_taken(uow, cmd.handle)
    agent = await _saved(
        uow,
        Worker(
            handle=cmd.handle,
            name=cmd.name,
            type=WorkerType.AGENT.value,
            agent_type=cmd.agent_type.value,
            capabilities=cmd.capabilities,
            created_by_id=actor.worker_id,
        ),
    )
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=agent.id,
        action=AuditAction.AGENT_REGISTERED,
        details={
            "new": cmd.model_dump(
                mode="json",
                exclude={"expires_at", "read_only", "projects", "manage_agents"},
            )
        },
    )
    return await _issue_key(uow, actor, agent, "default", cmd.expires_at, scopes)


@declare(
    GetWorker,
    toolset=READS,
    read_only=True,
    mcp="get_worker",
    rest=Route("GET", "/api/workers/{handle}"),
    cli="worker show",
)
async def get_worker(cmd: GetWorker, uow: UnitOfWork, actor: Actor) -> WorkerOut:
    """Read one worker by handle: human or agent, its capabilities, whether it is active."""
    return worker_out(await worker_by_handle(uow.session, cmd.handle))


@declare(
    CreateApiKey,
    toolset=ADMIN,
    mcp="create_api_key",
    rest=Route("POST", "/api/workers/{handle}/keys", 201),
    cli="agent new-key",
)
async def create_api_key(cmd: CreateApiKey, uow: UnitOfWork, actor: Actor) -> IssuedKey:
    """Issue another API key for an agent (by the agent or whoever registered it); shown once."""
    refuse_unmanaging(actor.scopes, actor.key_prefix, "issuing an API key")
    agent = await _managed_agent(
        uow, actor, cmd.handle, verb="issue its keys", lock=True, mint=True
    )
    _refuse_deactivated(agent)
    scopes = await key_scopes(uow, actor, cmd.read_only, cmd.projects, cmd.manage_agents)
    return await _issue_key(uow, actor, agent, cmd.name, cmd.expires_at, scopes)


@declare(
    ListApiKeys,
    toolset=ADMIN,
    read_only=True,
    mcp="list_api_keys",
    rest=Route("GET", "/api/workers/{handle}/keys"),
    cli="agent keys",
)
async def list_api_keys(cmd: ListApiKeys, uow: UnitOfWork, actor: Actor) -> list[ApiKeyOut]:
    """List an agent's API keys with their ids; never the keys themselves, only their prefixes."""
    agent = await _managed_agent(uow, actor, cmd.handle)
    keys = list(
        await uow.session.scalars(
            select(ApiKey).where(ApiKey.worker_id == agent.id).order_by(ApiKey.id)
        )
    )
    ids = sorted({p for k in keys for p in (k.project_ids or [])})
    slugs = await slugs_of(uow, ids)
    return [key_out(k, cmd.handle, slugs) for k in keys]


async def _revoke(uow: UnitOfWork, actor: Actor, agent: Worker, key_id: int) -> ApiKey:
    """Revoke one key of an agent the caller manages (`_managed_agent` already checked)."""
    key = await uow.session.get(ApiKey, key_id, with_for_update=True)
    if key is None or key.worker_id != agent.id:
        raise NotFound(
            f"{agent.handle} has no API key {key_id}: list its keys for ids",
            entity="api_key",
            next_step=NextStep("list_api_keys", {"handle": agent.handle}),
        )
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked")
    key.revoked_at = datetime.now(UTC)
    await uow.record(
        actor,
        entity_type="api_key",
        entity_id=key.id,
        action=AuditAction.API_KEY_REVOKED,
        details={"agent": agent.handle, "prefix": key.display_prefix},
    )
    return key


@declare(
    RevokeApiKey,
    toolset=ADMIN,
    destructive=True,
    mcp="revoke_api_key",
    rest=Route("POST", "/api/workers/{handle}/keys/{key_id}/revoke"),
    cli="agent revoke",
)
async def revoke_api_key(cmd: RevokeApiKey, uow: UnitOfWork, actor: Actor) -> ApiKeyOut:
    """Revoke one of an agent's API keys at once: requests with it are refused from then on."""
    agent = await _managed_agent(uow, actor, cmd.handle)
    return key_out(await _revoke(uow, actor, agent, cmd.key_id), cmd.handle)


@declare(
    RotateApiKey,
    toolset=ADMIN,
    destructive=True,
    mcp="rotate_api_key",
    rest=Route("POST", "/api/workers/{handle}/keys/{key_id}/rotate", 201),
    cli="agent rotate",
)
async def rotate_api_key(cmd: RotateApiKey, uow: UnitOfWork, actor: Actor) -> IssuedKey:
    """Replace an agent's API key with a new one (same name and expiry) in one step; shown once.

    One unit of work revokes the old key and issues the new one: never zero keys, never two.
    The new key keeps the old one's scopes unless others are given (never more than yours).
    """
    refuse_unmanaging(actor.scopes, actor.key_prefix, "rotating an API key")
    agent = await _managed_agent(
        uow, actor, cmd.handle, verb="rotate its keys", lock=True, mint=True
    )
    _refuse_deactivated(agent)
    old = await _revoke(uow, actor, agent, cmd.key_id)
    if old.expires_at is not None and old.expires_at <= datetime.now(UTC):
        raise Conflict(  # rolls the revocation back: nothing changes
            f"API key {cmd.key_id} expired at {old.expires_at.isoformat()}: a rotated key keeps "
            "its expiry, so create a new key with a new expiry instead",
            next_step=NextStep("create_api_key", {"handle": cmd.handle}),
        )
    scopes = await key_scopes(
        uow,
        actor,
        old.read_only if cmd.read_only is None else cmd.read_only,
        cmd.projects,
        old.manage_agents if cmd.manage_agents is None else cmd.manage_agents,
        kept=None if old.project_ids is None else frozenset(old.project_ids),
    )
    return await _issue_key(uow, actor, agent, old.name, old.expires_at, scopes)


_HUMANS_STAY = "only agents can be deactivated; a human's access ends at the auth server"


@declare(
    DeactivateAgent,
    toolset=ADMIN,
    destructive=True,
    idempotent=True,
    mcp="deactivate_agent",
    rest=Route("POST", "/api/workers/{handle}/deactivate"),
    cli="agent deactivate",
)
async def deactivate_agent(cmd: DeactivateAgent, uow: UnitOfWork, actor: Actor) -> AgentDeactivated:
    """Switch an agent off: all its keys revoked, no sign-in, claims or new tasks; history stays.

    Tasks already assigned to it stay assigned (reassign them). Deactivating an agent that
    already is changes nothing and writes nothing, so a retry is harmless. Allowed to the agent
    itself and to whoever registered it.
    """
    handle = cmd.handle
    agent = await _managed_agent(
        uow, actor, handle, verb="deactivate it", human=_HUMANS_STAY, lock=True
    )
    if agent.deactivated_at is not None:
        return AgentDeactivated(worker=worker_out(agent), changed=False)
    now = datetime.now(UTC)
    keys = (
        await uow.session.scalars(
            select(ApiKey)
            .where(ApiKey.worker_id == agent.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id)
            .with_for_update()
        )
    ).all()
    for key in keys:
        key.revoked_at = now
    agent.deactivated_at = now
    # One entry for the whole switch-off: the revoked keys are named in it, so the key history
    # reads "revoked by deactivation" rather than as separate, unexplained acts.
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=agent.id,
        action=AuditAction.AGENT_DEACTIVATED,
        details={
            "agent": handle,
            "revoked_keys": [{"id": k.id, "prefix": k.display_prefix} for k in keys],
        },
    )
    await uow.session.flush()
    return AgentDeactivated(
        worker=worker_out(agent), changed=True, revoked_keys=[key_out(k, handle) for k in keys]
    )


@declare(
    ReactivateAgent,
    toolset=ADMIN,
    mcp="reactivate_agent",
    rest=Route("POST", "/api/workers/{handle}/reactivate", 201),
    cli="agent reactivate",
)
async def reactivate_agent(cmd: ReactivateAgent, uow: UnitOfWork, actor: Actor) -> IssuedKey:
    """Switch a deactivated agent back on with a new API key, shown once (old keys stay revoked)."""
    refuse_unmanaging(actor.scopes, actor.key_prefix, "reactivating an agent")
    agent = await _managed_agent(
        uow, actor, cmd.handle, verb="reactivate it", human=_HUMANS_STAY, lock=True, mint=True
    )
    if agent.deactivated_at is None:
        raise Conflict(
            f"{cmd.handle} is active: there is nothing to reactivate (issue another key instead)",
            next_step=NextStep("create_api_key", {"handle": cmd.handle}),
        )
    agent.deactivated_at = None
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=agent.id,
        action=AuditAction.AGENT_REACTIVATED,
        details={"agent": cmd.handle},
    )
    scopes = await key_scopes(uow, actor, cmd.read_only, cmd.projects, cmd.manage_agents)
    return await _issue_key(uow, actor, agent, cmd.name, cmd.expires_at, scopes)

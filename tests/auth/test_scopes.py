"""API key scopes in the core, for callers authenticated with real keys: read-only keys, keys
limited to projects, the manage_agents scope, transitive management of agents (the leaked key
that minted a spare), quotas, and separation of duties through one's own agent."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.domain import ApprovalPolicy, Role, Via
from taskflow.core.errors import Forbidden, NotFound, Unauthenticated
from taskflow.core.handlers.projects import UpdateProject
from taskflow.core.handlers.tasks import GetTask, ListTasks
from taskflow.core.handlers.workers import ListWorkers
from taskflow.core.handlers.workflow import Approve, RequestReview, Start
from taskflow.core.schemas import AddMember, CreateProject, CreateTask, IssuedKey, RegisterAgent
from taskflow.core.services import projects, workers
from tests.auth.conftest import audit_entries
from tests.conftest import make_human


async def count(db: Database, table: str) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


@pytest.fixture
async def sarah(db: Database) -> Actor:
    """Owner of `web` and `ops`."""
    actor = await make_human(db, "@sarah")
    for slug in ("web", "ops"):
        await projects.create_project(db, actor, CreateProject(slug=slug, name=slug))
    return actor


@pytest.fixture
async def bot(db: Database, sarah: Actor) -> IssuedKey:
    """@bot, registered by @sarah, a member of `web` and `ops`."""
    issued = await workers.register_agent(db, sarah, RegisterAgent(handle="@bot", name="Bot"))
    for slug in ("web", "ops"):
        await projects.add_member(db, sarah, slug, AddMember(handle="@bot", role=Role.MEMBER))
    return issued


async def key_actor(auth: Authenticator, db: Database, by: Actor, **scopes: object) -> Actor:
    issued = await workers.create_api_key(db, by, "@bot", "scoped", **scopes)
    return await auth.authenticate(issued.api_key, Via.MCP, request_id="r-scoped")


async def test_a_read_only_key_reads_but_is_refused_every_change_naming_the_scope(
    local_auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    reader = await key_actor(local_auth, db, sarah, read_only=True)
    task = (await run(db, sarah, CreateTask(title="Visible", project="web"))).task
    before = await count(db, "audit_log")

    assert (await run(db, reader, GetTask(task_id=task.id))).task.title == "Visible"
    assert [t.id for t in (await run(db, reader, ListTasks())).items] == [task.id]
    for change in (CreateTask(title="No", project="web"), Start(task_id=task.id)):
        with pytest.raises(Forbidden, match=r"is read-only: .* needs the write scope") as err:
            await run(db, reader, change)
        assert err.value.extra["scope"] == "write"
        assert reader.key_prefix in err.value.message
    assert await count(db, "audit_log") == before


async def test_a_project_limited_key_sees_other_projects_as_not_found(
    local_auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    web_only = await key_actor(local_auth, db, sarah, projects=["web"])
    in_web = (await run(db, sarah, CreateTask(title="Web", project="web"))).task
    in_ops = (await run(db, sarah, CreateTask(title="Ops", project="ops"))).task
    before = await count(db, "tasks")

    assert [p.slug for p in await projects.list_projects(db, web_only)] == ["web"]
    assert [t.id for t in (await run(db, web_only, ListTasks())).items] == [in_web.id]
    with pytest.raises(NotFound, match="project 'ops' not found"):
        await projects.get_project(db, web_only, "ops")
    with pytest.raises(NotFound, match=f"task {in_ops.id}"):
        await run(db, web_only, GetTask(task_id=in_ops.id))
    with pytest.raises(NotFound):
        await run(db, web_only, Start(task_id=in_ops.id))
    with pytest.raises(NotFound):
        await run(db, web_only, CreateTask(title="Sneaky", project="ops"))
    assert await count(db, "tasks") == before
    made = (await run(db, web_only, CreateTask(title="Fine", project="web"))).task
    [entry] = await audit_entries(db, entity_type="task", entity_id=made.id)
    assert entry.actor_key == web_only.key_prefix  # the audit entry names the key used
    # A key it issues is never wider: limited to web too, even when nothing is asked.
    web_only_mgr = await key_actor(local_auth, db, sarah, projects=["web"], manage_agents=True)
    child = await workers.create_api_key(db, web_only_mgr, "@bot", "child")
    assert child.key.projects == ["web"]
    with pytest.raises(NotFound):
        await workers.create_api_key(db, web_only_mgr, "@bot", "wider", projects=["ops"])


async def test_keys_list_their_scopes(
    local_auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    await workers.create_api_key(
        db, sarah, "@bot", "narrow", read_only=True, projects=["web", "ops"]
    )
    listed = {k.name: k for k in await workers.list_api_keys(db, sarah, "@bot")}
    assert (listed["default"].read_only, listed["default"].projects) == (False, None)
    assert listed["narrow"].read_only and listed["narrow"].projects == ["ops", "web"]
    assert not listed["narrow"].manage_agents


async def test_the_leaked_key_cannot_mint_a_spare_and_the_owner_sees_the_whole_chain(
    local_auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    """The probe: a leaked agent key minted a spare, registered sub-agents out of the owner's
    reach. A default key lacks manage_agents; with it, whatever it makes stays in reach."""
    leaked = await local_auth.authenticate(bot.api_key, Via.HTTP)
    with pytest.raises(Forbidden, match="lacks the manage_agents scope") as err:
        await workers.create_api_key(db, leaked, "@bot", "spare")
    assert err.value.extra["scope"] == "manage_agents"
    with pytest.raises(Forbidden, match="manage_agents"):
        await workers.register_agent(db, leaked, RegisterAgent(handle="@sub", name="Sub"))

    # A key that may manage agents: the spare and a sub-agent of a sub-agent stay in reach.
    manager = await key_actor(local_auth, db, sarah, manage_agents=True)
    spare = await workers.create_api_key(db, manager, "@bot", "spare", manage_agents=True)
    sub = await workers.register_agent(
        db, manager, RegisterAgent(handle="@sub", name="Sub", manage_agents=True)
    )
    sub_actor = await local_auth.authenticate(sub.api_key, Via.HTTP)
    await workers.register_agent(db, sub_actor, RegisterAgent(handle="@subsub", name="S2"))

    managed = await workers.list_workers(db, sarah, ListWorkers(managed=True))
    assert [w.handle for w in managed] == ["@bot", "@sub", "@subsub"]
    assert spare.key.id in [k.id for k in await workers.list_api_keys(db, sarah, "@bot")]
    await workers.revoke_api_key(db, sarah, "@bot", spare.key.id)
    with pytest.raises(Unauthenticated):
        await local_auth.authenticate(spare.api_key, Via.HTTP)
    subsub_keys = await workers.list_api_keys(db, sarah, "@subsub")  # two levels down
    await workers.deactivate_agent(db, sarah, "@subsub")
    await workers.deactivate_agent(db, sarah, "@sub")
    with pytest.raises(Unauthenticated):
        await local_auth.authenticate(sub.api_key, Via.HTTP)
    assert len(subsub_keys) == 1

    # Someone else still has no reach.
    tom = await make_human(db, "@tom")
    with pytest.raises(Forbidden, match="only @subsub itself or the worker who registered it"):
        await workers.list_api_keys(db, tom, "@subsub")
    assert await workers.list_workers(db, tom, ListWorkers(managed=True)) == []


async def test_a_project_owner_manages_the_agents_in_the_project(
    local_auth: Authenticator, db: Database, sarah: Actor
) -> None:
    tom = await make_human(db, "@tom")
    await projects.add_member(db, sarah, "web", AddMember(handle="@tom", role=Role.MEMBER))
    helper = await workers.register_agent(
        db, tom, RegisterAgent(handle="@helper", name="H", manage_agents=True)
    )
    await projects.add_member(db, sarah, "web", AddMember(handle="@helper", role=Role.MEMBER))
    helper_actor = await local_auth.authenticate(helper.api_key, Via.HTTP)
    await workers.register_agent(db, helper_actor, RegisterAgent(handle="@minion", name="M"))

    managed = await workers.list_workers(db, sarah, ListWorkers(managed=True))
    assert [w.handle for w in managed] == ["@helper", "@minion"]
    keys = await workers.list_api_keys(db, sarah, "@minion")
    revoked = await workers.revoke_api_key(db, sarah, "@minion", keys[0].id)
    assert revoked.revoked_at is not None
    # Seeing and stopping, not acting as: no one up the chain or owning the project gets a key.
    before = await count(db, "api_keys")
    for outsider in (sarah, tom):
        with pytest.raises(Forbidden, match="which issues no keys"):
            await workers.create_api_key(db, outsider, "@minion", "mine")
    with pytest.raises(Forbidden, match="which issues no keys"):
        await workers.rotate_api_key(db, sarah, "@helper", helper.key.id)
    assert await count(db, "api_keys") == before
    await workers.deactivate_agent(db, sarah, "@helper")  # stopping is allowed
    with pytest.raises(Forbidden, match="which issues no keys"):
        await workers.reactivate_agent(db, sarah, "@helper")


async def test_quotas_refuse_the_agent_and_the_key_over_the_limit(
    local_auth: Authenticator,
    db: Database,
    sarah: Actor,
    bot: IssuedKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFLOW_MAX_AGENTS_PER_WORKER", "2")
    monkeypatch.setenv("TASKFLOW_MAX_KEYS_PER_AGENT", "2")
    await workers.register_agent(db, sarah, RegisterAgent(handle="@two", name="Two"))
    agents, entries = await count(db, "workers"), await count(db, "audit_log")
    with pytest.raises(Forbidden, match=r"already has 2 active agents.*MAX_AGENTS") as err:
        await workers.register_agent(db, sarah, RegisterAgent(handle="@three", name="3"))
    assert err.value.extra["quota"] == "max_agents_per_worker"
    assert (await count(db, "workers"), await count(db, "audit_log")) == (agents, entries)
    await workers.deactivate_agent(db, sarah, "@two")  # frees a place
    await workers.register_agent(db, sarah, RegisterAgent(handle="@three", name="3"))

    await workers.create_api_key(db, sarah, "@bot", "second")
    keys = await count(db, "api_keys")
    with pytest.raises(Forbidden, match=r"already holds 2 live API keys"):
        await workers.create_api_key(db, sarah, "@bot", "third")
    assert await count(db, "api_keys") == keys
    rotated = await workers.rotate_api_key(db, sarah, "@bot", bot.key.id)  # one for one
    assert rotated.key.name == "default"


async def test_sub_agents_cannot_multiply_the_quota(
    local_auth: Authenticator, db: Database, sarah: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents registered down the chain count for every registrant above them."""
    monkeypatch.setenv("TASKFLOW_MAX_AGENTS_PER_WORKER", "2")
    lead = await workers.register_agent(
        db, sarah, RegisterAgent(handle="@lead", name="Lead", manage_agents=True)
    )
    as_lead = await local_auth.authenticate(lead.api_key, Via.HTTP)
    await workers.register_agent(db, as_lead, RegisterAgent(handle="@a1", name="A1"))
    with pytest.raises(Forbidden, match=r"@sarah already has 2 active agents .*down its chain"):
        await workers.register_agent(db, as_lead, RegisterAgent(handle="@a2", name="A2"))
    with pytest.raises(Forbidden, match="@sarah already has 2"):
        await workers.register_agent(db, sarah, RegisterAgent(handle="@a3", name="A3"))
    await workers.deactivate_agent(db, sarah, "@a1")  # registered by @lead, stopped by @sarah
    await workers.register_agent(db, as_lead, RegisterAgent(handle="@a2", name="A2"))


async def test_a_burst_of_registrations_is_counted_one_at_a_time(
    db: Database, sarah: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe registered 100 agents in 0.6 s: concurrently, the quota still holds exactly."""
    monkeypatch.setenv("TASKFLOW_MAX_AGENTS_PER_WORKER", "3")
    attempts = [
        workers.register_agent(db, sarah, RegisterAgent(handle=f"@burst-{i}", name=f"B{i}"))
        for i in range(12)
    ]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    made = [o for o in outcomes if isinstance(o, IssuedKey)]
    refused = [o for o in outcomes if isinstance(o, Forbidden)]
    assert (len(made), len(refused)) == (3, 9), outcomes
    assert await count(db, "workers") == 1 + 3


async def test_nobody_approves_work_done_through_their_own_agent(
    local_auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    """@sarah registered @bot; @bot does the work; @sarah may not approve it, nor may @bot
    approve @sarah's work, in a project that requires review. Another member may."""
    await run(
        db,
        sarah,
        UpdateProject(project="web", approval_policy=ApprovalPolicy.REVIEW_REQUIRED),
    )
    agent = await local_auth.authenticate(bot.api_key, Via.MCP)
    task = (await run(db, sarah, CreateTask(title="Ship", project="web"))).task
    await run(db, agent, Start(task_id=task.id))
    await run(db, agent, RequestReview(task_id=task.id))
    before = await count(db, "audit_log")

    with pytest.raises(Forbidden, match="an agent you registered") as err:
        await run(db, sarah, Approve(task_id=task.id))
    assert err.value.extra["rule"] == "separation_of_duties"
    assert await count(db, "audit_log") == before

    # The other way round: the agent approving its registrant's work.
    mine = (await run(db, sarah, CreateTask(title="Mine", project="web"))).task
    await run(db, sarah, Start(task_id=mine.id))
    await run(db, sarah, RequestReview(task_id=mine.id))
    with pytest.raises(Forbidden, match="registered you"):
        await run(db, agent, Approve(task_id=mine.id))

    # A reviewer outside the chain approves.
    ann = await make_human(db, "@ann")
    await projects.add_member(db, sarah, "web", AddMember(handle="@ann", role=Role.MEMBER))
    assert (await run(db, ann, Approve(task_id=task.id))).status == "completed"

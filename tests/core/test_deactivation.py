"""Agents as things you manage: whoami's own personal data, the type filter, and deactivating and
reactivating an agent (keys revoked, no sign-in, claims or new tasks; history kept)."""

from __future__ import annotations

import pytest

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator, local_actor
from taskflow.core.domain import Role, Via, WorkerType
from taskflow.core.errors import (
    Conflict,
    Forbidden,
    NextStep,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from taskflow.core.schemas import (
    AddMember,
    CreateHuman,
    CreateTask,
    EditTask,
    RegisterAgent,
    WorkerFilter,
)
from taskflow.core.services import projects, task_queries, tasks, workers, workflow
from tests.conftest import make_human
from tests.core.conftest import assert_entry, make_agent, refused, sql, tail
from tests.snapshots import snapshot


async def _agent_with_keys(db, owner, handle: str = "@bot") -> tuple[str, str]:
    """An agent registered by `owner`, member of `web`, with two live keys: (first, second)."""
    issued = await workers.register_agent(db, owner, RegisterAgent(handle=handle, name="Bot"))
    second = await workers.create_api_key(db, owner, handle, "ci")
    await projects.add_member(db, owner, "web", AddMember(handle=handle, role=Role.MEMBER))
    return issued.api_key, second.api_key


# ---------------------------------------------------------------- whoami and privacy


async def test_whoami_shows_only_the_callers_own_email_and_subject(db, owner):
    ann = await workers.create_human(
        db, CreateHuman(handle="@ann", name="Ann", email="ann@example.com", sso_subject="sub-ann")
    )
    ann_actor = Actor(worker_id=ann.id, handle="@ann", type=WorkerType.HUMAN)
    me = await workers.whoami(db, ann_actor)
    assert (me.email, me.sso_subject) == ("ann@example.com", "sub-ann")
    bot = await make_agent(db, owner, "@bot")
    mine = await workers.whoami(db, bot)
    assert (mine.email, mine.sso_subject, mine.active) == (None, None, True)
    # Nobody else's record carries them, whoever asks: get, list, or a project's members.
    await projects.add_member(db, owner, "web", AddMember(handle="@ann"))
    seen = [
        (await workers.get_worker(db, owner, "@ann")).model_dump(),
        *[w.model_dump() for w in await workers.list_workers(db, bot)],
        *[m.model_dump() for m in await projects.list_members(db, owner, "web")],
    ]
    for record in seen:
        assert "email" not in record and "sso_subject" not in record
        assert "ann@example.com" not in str(record) and "sub-ann" not in str(record)
    logged = await sql(db, "SELECT details::text AS d FROM audit_log")
    assert not any("ann@example.com" in r.d or "sub-ann" in r.d for r in logged)


async def test_list_workers_filters_by_type_in_the_core(db, owner):
    await make_agent(db, owner, "@bot")
    await make_human(db, "@mike")
    agents = await workers.list_workers(db, owner, WorkerFilter(type=WorkerType.AGENT))
    humans = await workers.list_workers(db, owner, WorkerFilter(type=WorkerType.HUMAN))
    everyone = await workers.list_workers(db, owner)
    assert [w.handle for w in agents] == ["@bot"]
    assert [w.handle for w in humans] == ["@mike", "@sarah"]
    assert [w.handle for w in everyone] == ["@bot", "@mike", "@sarah"]


# ---------------------------------------------------------------- deactivation


async def test_deactivate_revokes_every_key_in_one_audited_step(db, owner):
    first, second = await _agent_with_keys(db, owner)
    auth = Authenticator(db, None)
    assert (await auth.authenticate(first, Via.HTTP)).handle == "@bot"
    log = await tail(db)
    done = await workers.deactivate_agent(db, owner, "@bot")
    assert done.changed and not done.worker.active and done.worker.deactivated_at is not None
    assert [k.name for k in done.revoked_keys] == ["default", "ci"]
    assert all(k.revoked_at == done.worker.deactivated_at for k in done.revoked_keys)
    entry = await log.one()
    assert_entry(
        entry, action="agent_deactivated", actor=owner, entity="worker", entity_id=done.worker.id
    )
    assert entry["details"] == {
        "agent": "@bot",
        "revoked_keys": [{"id": k.id, "prefix": k.display_prefix} for k in done.revoked_keys],
    }
    for key in (first, second):
        with pytest.raises(Unauthenticated, match="invalid API key"):
            await auth.authenticate(key, Via.HTTP)
    shown = await workers.get_worker(db, owner, "@bot")
    assert (shown.active, shown.deactivated_at) == (False, done.worker.deactivated_at)
    listed = await workers.list_workers(db, owner, WorkerFilter(type=WorkerType.AGENT))
    assert [(w.handle, w.active) for w in listed] == [("@bot", False)]


async def test_deactivating_again_changes_and_writes_nothing(db, owner):
    await _agent_with_keys(db, owner)
    first = await workers.deactivate_agent(db, owner, "@bot")
    before = await snapshot(db)
    again = await workers.deactivate_agent(db, owner, "@bot")
    assert await snapshot(db) == before
    assert (again.changed, again.revoked_keys) == (False, [])
    assert again.worker == first.worker


async def test_deactivation_refusals_change_nothing(db, owner):
    await _agent_with_keys(db, owner)
    mike = await make_human(db, "@mike")
    err = await refused(db, workers.deactivate_agent(db, mike, "@bot"), Forbidden)
    assert "registered it" in err.message and "deactivate" in err.message
    err = await refused(db, workers.deactivate_agent(db, owner, "@mike"), Conflict)
    assert "only agents can be deactivated" in err.message
    err = await refused(db, workers.deactivate_agent(db, owner, "@ghost"), NotFound)
    assert err.next_step == NextStep("list_workers")
    err = await refused(db, workers.reactivate_agent(db, owner, "@bot"), Conflict)
    assert "is active" in err.message


async def test_an_agent_may_deactivate_itself(db, owner):
    bot = await make_agent(db, owner, "@bot")
    done = await workers.deactivate_agent(db, bot, "@bot")
    assert not done.worker.active
    [row] = await sql(db, "SELECT actor_handle FROM audit_log WHERE action = 'agent_deactivated'")
    assert row.actor_handle == "@bot"


async def test_a_deactivated_agent_cannot_be_given_tasks(db, owner):
    await _agent_with_keys(db, owner)
    await make_agent(db, owner, "@spare")
    t = (await tasks.create_task(db, owner, CreateTask(title="t", project="web"))).task
    await workers.deactivate_agent(db, owner, "@bot")
    calls = [
        workflow.assign(db, owner, t.id, "@bot"),
        tasks.edit_task(db, owner, t.id, EditTask(assignee="@bot")),
        tasks.create_task(db, owner, CreateTask(title="n", project="web", assignee="@bot")),
    ]
    for attempt in calls:
        err = await refused(db, attempt, ValidationFailed)
        assert "@bot is deactivated" in err.message and err.extra["field"] == "assignee"
    await workflow.start(db, owner, t.id)
    err = await refused(db, workflow.delegate(db, owner, t.id, "@bot"), ValidationFailed)
    assert "deactivated" in err.message


async def test_a_deactivated_agent_cannot_claim_and_keeps_its_work(db, owner):
    await _agent_with_keys(db, owner)
    bot = Actor(
        worker_id=(await workers.get_worker(db, owner, "@bot")).id,
        handle="@bot",
        type=WorkerType.AGENT,
    )
    mine = (await tasks.create_task(db, owner, CreateTask(title="mine", project="web"))).task
    await workflow.claim_next(db, bot)  # takes `mine`
    await tasks.create_task(db, owner, CreateTask(title="open", project="web"))
    await workers.deactivate_agent(db, owner, "@bot")
    err = await refused(db, workflow.claim_next(db, bot), Forbidden)
    assert "@bot is deactivated" in err.message
    kept = (await task_queries.get_task(db, owner, mine.id)).task
    assert (kept.assignee, kept.status) == ("@bot", "in_progress")
    history = await sql(db, "SELECT count(*) AS n FROM audit_log WHERE actor_handle = '@bot'")
    assert history[0].n == 1  # its claim is still in the log


async def test_no_new_key_for_a_deactivated_agent_except_by_reactivating(db, owner):
    await _agent_with_keys(db, owner)
    done = await workers.deactivate_agent(db, owner, "@bot")
    err = await refused(db, workers.create_api_key(db, owner, "@bot"), Conflict)
    assert "reactivate" in err.message
    key_id = done.revoked_keys[0].id
    err = await refused(db, workers.rotate_api_key(db, owner, "@bot", key_id), Conflict)
    assert "deactivated" in err.message


async def test_reactivate_issues_a_new_key_and_keeps_old_ones_revoked(db, owner):
    first, _ = await _agent_with_keys(db, owner)
    await workers.deactivate_agent(db, owner, "@bot")
    mike = await make_human(db, "@mike")
    await refused(db, workers.reactivate_agent(db, mike, "@bot"), Forbidden)
    log = await tail(db)
    issued = await workers.reactivate_agent(db, owner, "@bot", "after-pause")
    assert issued.worker.active and issued.worker.deactivated_at is None
    assert issued.key.name == "after-pause"
    reactivated, created = await log.new()
    assert_entry(reactivated, action="agent_reactivated", actor=owner, entity="worker")
    assert reactivated["details"] == {"agent": "@bot"}
    assert_entry(created, action="api_key_created", actor=owner, entity="api_key")
    auth = Authenticator(db, None)
    assert (await auth.authenticate(issued.api_key, Via.MCP)).handle == "@bot"
    with pytest.raises(Unauthenticated):
        await auth.authenticate(first, Via.MCP)
    t = (await tasks.create_task(db, owner, CreateTask(title="t", project="web"))).task
    assert (await workflow.assign(db, owner, t.id, "@bot")).assignee == "@bot"


async def test_identity_refuses_a_deactivated_worker_whatever_its_credential(db, owner):
    first, _ = await _agent_with_keys(db, owner)
    # A live key of a deactivated worker (only reachable by hand) still does not sign in.
    await sql(db, "UPDATE workers SET deactivated_at = now() WHERE handle = '@bot'")
    with pytest.raises(Unauthenticated, match="invalid API key"):
        await Authenticator(db, None).authenticate(first, Via.HTTP)
    await sql(db, "UPDATE workers SET deactivated_at = now() WHERE handle = '@sarah'")
    with pytest.raises(Unauthenticated, match="@sarah is deactivated"):
        await local_actor(db, "@sarah", Via.CLI)

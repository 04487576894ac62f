"""Workers and agent keys: registration, key issue/revoke/rotate, and their audit entries."""

from __future__ import annotations

import hashlib

from taskflow.core.auth.keys import is_api_key
from taskflow.core.domain import AgentType, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NextStep, NotFound
from taskflow.core.schemas import RegisterAgent
from taskflow.core.services import workers
from tests.conftest import make_human
from tests.core.conftest import assert_entry, make_agent, refused, sql, tail


async def test_whoami_list_and_get(db, owner):
    me = await workers.whoami(db, owner)
    assert (me.handle, me.type, me.name) == ("@sarah", WorkerType.HUMAN, "Sarah Chen")
    await make_human(db, "@mike")
    assert [w.handle for w in await workers.list_workers(db, owner)] == ["@mike", "@sarah"]
    assert (await workers.get_worker(db, owner, "@mike")).handle == "@mike"
    err = await refused(db, workers.get_worker(db, owner, "@ghost"), NotFound)
    assert err.next_step == NextStep("list_workers")


async def test_create_human_is_audited_as_itself(db):
    log = await tail(db)
    mike = await make_human(db, "@mike")
    entry = await log.one()
    assert_entry(entry, action="created", actor=mike, entity="worker", entity_id=mike.worker_id)
    assert entry["details"] == {"new": {"handle": "@mike", "name": "mike"}}


async def test_register_agent_issues_a_key_stored_only_as_hash(db, owner):
    log = await tail(db)
    cmd = RegisterAgent(
        handle="@claude-code", name="Claude", agent_type=AgentType.CLAUDE, capabilities=["py"]
    )
    issued = await workers.register_agent(db, owner, cmd)
    assert issued.worker.type is WorkerType.AGENT
    assert issued.worker.agent_type is AgentType.CLAUDE
    assert issued.worker.capabilities == ["py"]
    assert is_api_key(issued.api_key)
    assert issued.key.display_prefix and issued.api_key.startswith("tf_")
    stored = await sql(db, "SELECT key_hash FROM api_keys")
    assert [r.key_hash for r in stored] == [hashlib.sha256(issued.api_key.encode()).hexdigest()]
    registered, key_created = await log.new()
    assert_entry(
        registered,
        action="agent_registered",
        actor=owner,
        entity="worker",
        entity_id=issued.worker.id,
    )
    assert registered["details"] == {
        "new": {
            "handle": "@claude-code",
            "name": "Claude",
            "agent_type": "claude",
            "capabilities": ["py"],
        }
    }
    assert_entry(
        key_created,
        action="api_key_created",
        actor=owner,
        entity="api_key",
        entity_id=issued.key.id,
    )
    assert key_created["details"] == {
        "agent": "@claude-code",
        "name": "default",
        "prefix": issued.key.display_prefix,
        "expires_at": None,
        "read_only": False,
        "projects": None,
        "manage_agents": False,
    }
    assert issued.api_key not in str(registered) + str(key_created), "the key is never logged"


async def test_register_agent_with_taken_handle_is_refused(db, owner):
    cmd = RegisterAgent(handle="@sarah", name="dup")
    err = await refused(db, workers.register_agent(db, owner, cmd), Conflict)
    assert "taken" in err.message


async def test_agents_may_register_agents(db, owner):
    agent = await make_agent(db, owner, "@bot")
    child = await workers.register_agent(db, agent, RegisterAgent(handle="@bot2", name="b2"))
    assert child.worker.handle == "@bot2"
    keys = await workers.list_api_keys(db, agent, "@bot2")
    assert [k.id for k in keys] == [child.key.id]


async def test_create_and_list_api_keys(db, owner):
    agent = await make_agent(db, owner, "@bot")
    log = await tail(db)
    issued = await workers.create_api_key(db, agent, "@bot", name="ci")
    entry = await log.one()
    assert_entry(
        entry, action="api_key_created", actor=agent, entity="api_key", entity_id=issued.key.id
    )
    assert entry["details"]["name"] == "ci"
    await workers.create_api_key(db, owner, "@bot", name="laptop")
    keys = await workers.list_api_keys(db, owner, "@bot")
    assert [k.name for k in keys] == ["default", "ci", "laptop"]


async def test_api_key_refusals(db, owner):
    await make_agent(db, owner, "@bot")
    mike = await make_human(db, "@mike")
    err = await refused(db, workers.create_api_key(db, mike, "@bot"), Forbidden)
    assert "registered it" in err.message
    await refused(db, workers.list_api_keys(db, mike, "@bot"), Forbidden)
    err = await refused(db, workers.create_api_key(db, owner, "@mike"), Conflict)
    assert "human" in err.message
    await refused(db, workers.create_api_key(db, owner, "@ghost"), NotFound)


async def test_revoke_api_key(db, owner):
    agent = await make_agent(db, owner, "@bot")
    key_id = (await workers.list_api_keys(db, owner, "@bot"))[0].id
    log = await tail(db)
    out = await workers.revoke_api_key(db, agent, "@bot", key_id)
    assert out.revoked_at is not None
    entry = await log.one()
    assert_entry(entry, action="api_key_revoked", actor=agent, entity="api_key", entity_id=key_id)
    assert entry["details"] == {"agent": "@bot", "prefix": out.display_prefix}
    err = await refused(db, workers.revoke_api_key(db, owner, "@bot", key_id), Conflict)
    assert "already revoked" in err.message
    await refused(db, workers.revoke_api_key(db, owner, "@bot", key_id + 100), NotFound)
    await make_agent(db, owner, "@other")
    # A key id of another agent is not found under this one.
    await refused(db, workers.revoke_api_key(db, owner, "@other", key_id), NotFound)


async def test_rotate_api_key_revokes_and_issues_in_one_step(db, owner):
    await make_agent(db, owner, "@bot")
    old = (await workers.list_api_keys(db, owner, "@bot"))[0]
    log = await tail(db)
    issued = await workers.rotate_api_key(db, owner, "@bot", old.id)
    assert issued.key.id != old.id and issued.key.name == old.name
    revoked, created = await log.new()
    assert (revoked["action"], revoked["entity_id"]) == ("api_key_revoked", old.id)
    assert (created["action"], created["entity_id"]) == ("api_key_created", issued.key.id)
    keys = await workers.list_api_keys(db, owner, "@bot")
    assert [(k.id, k.revoked_at is None) for k in keys] == [(old.id, False), (issued.key.id, True)]
    await refused(db, workers.rotate_api_key(db, owner, "@bot", old.id), Conflict)


async def test_keys_cannot_be_born_expired(db, owner):
    from datetime import UTC, datetime, timedelta

    from taskflow.core.errors import ValidationFailed

    await make_agent(db, owner, "@bot")
    past = datetime.now(UTC) - timedelta(days=1)
    err = await refused(
        db, workers.create_api_key(db, owner, "@bot", expires_at=past), ValidationFailed
    )
    assert "past" in err.message
    await refused(
        db,
        workers.register_agent(db, owner, RegisterAgent(handle="@b2", name="b", expires_at=past)),
        ValidationFailed,
    )
    soon = datetime.now(UTC) + timedelta(days=1)
    issued = await workers.create_api_key(db, owner, "@bot", expires_at=soon)
    await sql(
        db,
        "UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = :id",
        id=issued.key.id,
    )
    err = await refused(db, workers.rotate_api_key(db, owner, "@bot", issued.key.id), Conflict)
    assert "expired" in err.message and "create a new key" in err.message
    assert err.next_step == NextStep("create_api_key", {"handle": "@bot"})  # each surface words it

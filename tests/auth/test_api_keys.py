"""Agent API keys against the real database: issue, authenticate, refuse, rotate, revoke.

Every refusal must be indistinguishable (same message) so a caller cannot probe which keys
exist; every key change must leave an audit entry naming who did it and through which surface.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.auth.keys import API_KEY_PREFIX, checksum_ok, generate_api_key
from taskflow.core.db import Database
from taskflow.core.domain import AgentType, AuditAction, Via, WorkerType
from taskflow.core.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed
from taskflow.core.models import ApiKey
from taskflow.core.schemas import IssuedKey, RegisterAgent
from taskflow.core.services import workers
from tests.auth.conftest import audit_entries, execute, scalar
from tests.conftest import make_human

REFUSED = "invalid API key: it is unknown, revoked or expired"


@pytest.fixture
async def sarah(db: Database) -> Actor:
    return (await make_human(db, "@sarah", "Sarah Chen")).through(Via.HTTP, "req-sarah")


@pytest.fixture
async def bot(db: Database, sarah: Actor) -> IssuedKey:
    """@bot, registered by @sarah, with its first key."""
    return await workers.register_agent(
        db,
        sarah,
        RegisterAgent(handle="@bot", name="Build bot", agent_type=AgentType.CLAUDE),
    )


async def refusal(auth: Authenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate(token, Via.MCP)
    assert caught.value.status == 401
    return caught.value.message


async def key_row(db: Database, key_id: int) -> ApiKey:
    async with db.transaction() as session:
        key = await session.get(ApiKey, key_id)
    assert key is not None
    return key


async def database_text(db: Database) -> str:
    """Every row of every table as text: where a leaked plaintext key would show up."""
    async with db.transaction() as session:
        tables = await session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        dump: list[str] = []
        for table in tables.all():
            dump.extend(await session.scalars(text(f'SELECT t::text FROM "{table}" t')))
    return "\n".join(dump)


# ---------------------------------------------------------------- issuing


async def test_register_agent_returns_the_key_once_and_stores_only_its_hash(
    db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    key = bot.api_key
    assert key.startswith(API_KEY_PREFIX) and checksum_ok(key)
    assert bot.worker.handle == "@bot" and bot.worker.type is WorkerType.AGENT
    assert bot.key.display_prefix == key[:11] and bot.key.worker == "@bot"

    row = await key_row(db, bot.key.id)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.created_by_id == sarah.worker_id and row.last_used_at is None

    everything = await database_text(db)
    assert key not in everything
    assert key[len(API_KEY_PREFIX) :] not in everything  # not even without its prefix
    assert key[11:] not in everything  # nor the part after the display prefix
    listed = await workers.list_api_keys(db, sarah, "@bot")
    assert key not in repr(listed)


async def test_registration_is_audited_with_the_registrar_as_actor(
    db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    [registered] = await audit_entries(db, action=AuditAction.AGENT_REGISTERED)
    [created] = await audit_entries(db, action=AuditAction.API_KEY_CREATED)

    assert (registered.entity_type, registered.entity_id) == ("worker", bot.worker.id)
    assert (created.entity_type, created.entity_id) == ("api_key", bot.key.id)
    for entry in (registered, created):
        assert (entry.actor_id, entry.actor_handle, entry.actor_type) == (
            sarah.worker_id,
            "@sarah",
            "human",
        )
        assert (entry.via, entry.request_id) == ("http", "req-sarah")
    assert registered.details["new"]["handle"] == "@bot"
    assert created.details["agent"] == "@bot"
    assert created.details["prefix"] == bot.key.display_prefix


async def test_registering_a_taken_handle_is_refused_and_changes_nothing(
    db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    before = len(await audit_entries(db))
    with pytest.raises(Conflict, match="the handle @bot is taken"):
        await workers.register_agent(db, sarah, RegisterAgent(handle="@bot", name="Other"))
    assert len(await audit_entries(db)) == before
    assert await scalar(db, "SELECT count(*) FROM api_keys") == 1


async def test_an_expiry_in_the_past_is_refused_and_changes_nothing(
    db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    before = len(await audit_entries(db))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(ValidationFailed, match="expires_at"):
        await workers.register_agent(
            db, sarah, RegisterAgent(handle="@late", name="Late", expires_at=yesterday)
        )
    with pytest.raises(ValidationFailed, match="expires_at"):
        await workers.create_api_key(db, sarah, "@bot", "ci", expires_at=yesterday)
    assert len(await audit_entries(db)) == before
    assert await scalar(db, "SELECT count(*) FROM workers WHERE handle = '@late'") == 0
    assert await scalar(db, "SELECT count(*) FROM api_keys") == 1


# ---------------------------------------------------------------- authenticating


async def test_a_key_authenticates_its_agent(
    auth: Authenticator, db: Database, bot: IssuedKey
) -> None:
    actor = await auth.authenticate(bot.api_key, Via.MCP, request_id="r-1")

    assert (actor.worker_id, actor.handle) == (bot.worker.id, "@bot")
    assert actor.type is WorkerType.AGENT and actor.is_agent
    assert (actor.auth, actor.key_id, actor.subject) == ("api_key", bot.key.id, None)
    assert (actor.via, actor.request_id) == (Via.MCP, "r-1")
    assert (await key_row(db, bot.key.id)).last_used_at is not None


async def test_last_used_is_written_at_most_once_a_minute(
    auth: Authenticator, db: Database, bot: IssuedKey
) -> None:
    await auth.authenticate(bot.api_key, Via.HTTP)
    first = (await key_row(db, bot.key.id)).last_used_at
    assert first is not None and datetime.now(UTC) - first < timedelta(seconds=10)

    for _ in range(5):
        await auth.authenticate(bot.api_key, Via.HTTP)
    assert (await key_row(db, bot.key.id)).last_used_at == first

    await execute(
        db,
        "UPDATE api_keys SET last_used_at = now() - interval '61 seconds' WHERE id = :id",
        id=bot.key.id,
    )
    aged = (await key_row(db, bot.key.id)).last_used_at
    await auth.authenticate(bot.api_key, Via.HTTP)
    refreshed = (await key_row(db, bot.key.id)).last_used_at
    assert aged is not None and refreshed is not None and refreshed > aged


async def test_every_bad_key_is_refused_with_the_same_message(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    key = bot.api_key
    revoked = await workers.create_api_key(db, sarah, "@bot", "to-revoke")
    await workers.revoke_api_key(db, sarah, "@bot", revoked.key.id)
    expired = await workers.create_api_key(
        db, sarah, "@bot", "to-expire", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    await execute(  # an hour passes
        db,
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id",
        id=expired.key.id,
    )
    unknown, _ = generate_api_key()  # well-formed, right checksum, never issued
    flip = {c: ("b" if c == "a" else "a") for c in key}
    one_char_changed = [key[:i] + flip[key[i]] + key[i + 1 :] for i in (3, 20, len(key) - 1)]
    bad = [
        revoked.api_key,
        expired.api_key,
        unknown,
        *one_char_changed,
        key[:-1],  # truncated
        key + "x",  # extended
        "tf_",
        API_KEY_PREFIX + key[len(API_KEY_PREFIX) :].swapcase(),
    ]

    messages = {await refusal(auth, token) for token in bad}

    assert len(messages) == 1, messages
    message = messages.pop()
    assert message.startswith(REFUSED)
    assert message.endswith("Ask whoever registered the agent for a new key")
    for issued in (revoked, expired):
        assert (await key_row(db, issued.key.id)).last_used_at is None
    assert (await auth.authenticate(key, Via.MCP)).handle == "@bot"  # the good one still works


async def test_a_key_with_a_future_expiry_works_until_then(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    soon = await workers.create_api_key(
        db, sarah, "@bot", "short", expires_at=datetime.now(UTC) + timedelta(minutes=5)
    )
    assert (await auth.authenticate(soon.api_key, Via.CLI)).key_id == soon.key.id
    await execute(
        db, "UPDATE api_keys SET expires_at = now() WHERE id = :id", id=soon.key.id
    )  # the moment of expiry itself is already too late
    assert (await refusal(auth, soon.api_key)).startswith(REFUSED)


# ---------------------------------------------------------------- managing keys


async def test_an_agent_may_hold_several_keys(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    ci = await workers.create_api_key(db, sarah, "@bot", "ci")
    laptop = await workers.create_api_key(db, sarah, "@bot", "laptop")

    ids = {
        (await auth.authenticate(k, Via.MCP)).key_id
        for k in (bot.api_key, ci.api_key, laptop.api_key)
    }
    assert ids == {bot.key.id, ci.key.id, laptop.key.id}
    listed = await workers.list_api_keys(db, sarah, "@bot")
    assert [(k.id, k.name) for k in listed] == [
        (bot.key.id, "default"),
        (ci.key.id, "ci"),
        (laptop.key.id, "laptop"),
    ]

    await workers.revoke_api_key(db, sarah, "@bot", ci.key.id)
    assert (await refusal(auth, ci.api_key)).startswith(REFUSED)
    assert (await auth.authenticate(laptop.api_key, Via.MCP)).key_id == laptop.key.id


async def test_revoking_refuses_the_key_and_is_audited(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    out = await workers.revoke_api_key(db, sarah, "@bot", bot.key.id)

    assert out.revoked_at is not None
    assert (await refusal(auth, bot.api_key)).startswith(REFUSED)
    [entry] = await audit_entries(db, action=AuditAction.API_KEY_REVOKED)
    assert (entry.entity_type, entry.entity_id) == ("api_key", bot.key.id)
    assert (entry.actor_handle, entry.via, entry.request_id) == ("@sarah", "http", "req-sarah")
    assert entry.details == {"agent": "@bot", "prefix": bot.key.display_prefix}

    with pytest.raises(Conflict, match="already revoked"):
        await workers.revoke_api_key(db, sarah, "@bot", bot.key.id)
    assert len(await audit_entries(db, action=AuditAction.API_KEY_REVOKED)) == 1


async def test_rotation_issues_a_working_key_and_refuses_the_old_one(
    auth: Authenticator, db: Database, sarah: Actor
) -> None:
    expiry = datetime.now(UTC) + timedelta(days=30)
    bot = await workers.register_agent(
        db, sarah, RegisterAgent(handle="@bot", name="Bot", expires_at=expiry)
    )

    new = await workers.rotate_api_key(db, sarah, "@bot", bot.key.id)

    assert new.api_key != bot.api_key and new.key.id != bot.key.id
    assert (new.key.name, new.key.expires_at) == (bot.key.name, bot.key.expires_at)
    assert (await auth.authenticate(new.api_key, Via.MCP)).key_id == new.key.id
    assert (await refusal(auth, bot.api_key)).startswith(REFUSED)
    [revoked] = await audit_entries(db, action=AuditAction.API_KEY_REVOKED)
    created = await audit_entries(db, action=AuditAction.API_KEY_CREATED)
    assert revoked.entity_id == bot.key.id and revoked.actor_handle == "@sarah"
    assert [e.entity_id for e in created] == [bot.key.id, new.key.id]
    assert created[-1].actor_handle == "@sarah" and created[-1].via == "http"


async def test_rotating_an_expired_key_is_refused_and_changes_nothing(
    auth: Authenticator, db: Database, sarah: Actor
) -> None:
    """Rotation keeps the old expiry: from an expired key it would issue a dead one."""
    bot = await workers.register_agent(
        db,
        sarah,
        RegisterAgent(handle="@bot", name="Bot", expires_at=datetime.now(UTC) + timedelta(days=1)),
    )
    await execute(
        db,
        "UPDATE api_keys SET expires_at = now() - interval '1 day' WHERE id = :id",
        id=bot.key.id,
    )
    before = len(await audit_entries(db))

    with pytest.raises(Conflict, match=r"expired.*create a new key"):
        await workers.rotate_api_key(db, sarah, "@bot", bot.key.id)

    assert len(await audit_entries(db)) == before
    assert (await key_row(db, bot.key.id)).revoked_at is None
    assert await scalar(db, "SELECT count(*) FROM api_keys") == 1


async def test_the_agent_itself_may_manage_its_keys(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    """With a key that has the manage_agents scope (see tests/auth/test_scopes.py without)."""
    me = await auth.authenticate(
        (await workers.create_api_key(db, sarah, "@bot", "mgr", manage_agents=True)).api_key,
        Via.MCP,
        request_id="r-self",
    )

    spare = await workers.create_api_key(db, me, "@bot", "spare")
    rotated = await workers.rotate_api_key(db, me, "@bot", bot.key.id)

    assert (await auth.authenticate(spare.api_key, Via.MCP)).handle == "@bot"
    assert (await auth.authenticate(rotated.api_key, Via.MCP)).handle == "@bot"
    assert (await refusal(auth, bot.api_key)).startswith(REFUSED)
    mine = [
        e
        for e in await audit_entries(db)
        if e.action in (AuditAction.API_KEY_CREATED, AuditAction.API_KEY_REVOKED)
        and e.actor_handle == "@bot"
    ]
    assert [(e.action, e.actor_type, e.via, e.request_id) for e in mine] == [
        ("api_key_created", "agent", "mcp", "r-self"),
        ("api_key_revoked", "agent", "mcp", "r-self"),
        ("api_key_created", "agent", "mcp", "r-self"),
    ]


async def test_an_agent_may_register_an_agent_and_manage_its_keys(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    mgr = await workers.create_api_key(db, sarah, "@bot", "mgr", manage_agents=True)
    me = await auth.authenticate(mgr.api_key, Via.MCP)

    helper = await workers.register_agent(db, me, RegisterAgent(handle="@helper", name="Helper"))

    assert (await auth.authenticate(helper.api_key, Via.MCP)).handle == "@helper"
    [entry] = await audit_entries(
        db, action=AuditAction.AGENT_REGISTERED, entity_id=helper.worker.id
    )
    assert (entry.actor_handle, entry.actor_type) == ("@bot", "agent")
    assert len(await workers.list_api_keys(db, me, "@helper")) == 1


async def test_another_human_may_not_manage_the_agents_keys(
    auth: Authenticator, db: Database, bot: IssuedKey
) -> None:
    tom = await make_human(db, "@tom")
    before = len(await audit_entries(db))

    attempts = [
        workers.create_api_key(db, tom, "@bot", "stolen"),
        workers.list_api_keys(db, tom, "@bot"),
        workers.revoke_api_key(db, tom, "@bot", bot.key.id),
        workers.rotate_api_key(db, tom, "@bot", bot.key.id),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden, match="only @bot itself or the worker who registered it"):
            await attempt

    assert len(await audit_entries(db)) == before
    assert await scalar(db, "SELECT count(*) FROM api_keys") == 1
    assert (await auth.authenticate(bot.api_key, Via.MCP)).handle == "@bot"


async def test_another_agent_may_not_manage_the_agents_keys(
    auth: Authenticator, db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    other = await workers.register_agent(db, sarah, RegisterAgent(handle="@other", name="Other"))
    as_other = await auth.authenticate(other.api_key, Via.MCP)

    with pytest.raises(Forbidden):
        await workers.revoke_api_key(db, as_other, "@bot", bot.key.id)
    # ...nor use a key id of its own to reach @bot's through its own handle, or vice versa
    with pytest.raises(NotFound, match="@other has no API key"):
        await workers.revoke_api_key(db, sarah, "@other", bot.key.id)
    assert (await key_row(db, bot.key.id)).revoked_at is None


async def test_keys_are_for_agents_and_unknown_handles_are_not_found(
    db: Database, sarah: Actor, bot: IssuedKey
) -> None:
    with pytest.raises(Conflict, match="@sarah is a human"):
        await workers.create_api_key(db, sarah, "@sarah")
    with pytest.raises(NotFound, match="no worker @ghost"):
        await workers.create_api_key(db, sarah, "@ghost")
    with pytest.raises(NotFound, match="has no API key 999"):
        await workers.revoke_api_key(db, sarah, "@bot", 999)
    assert await scalar(db, "SELECT count(*) FROM api_keys") == 1

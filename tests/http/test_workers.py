"""Workers and agents' API keys over REST, including what a revoked or rotated key can still do."""

from __future__ import annotations

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from tests.http.conftest import Agent, assert_audited, assert_problem, audit_count, register_agent


async def test_me_and_workers(as_bot: httpx.AsyncClient) -> None:
    me = await as_bot.get("/api/me")
    assert me.status_code == 200
    assert (me.json()["handle"], me.json()["type"], me.json()["agent_type"]) == (
        "@bot",
        "agent",
        "claude",
    )
    listed = await as_bot.get("/api/workers")
    assert [w["handle"] for w in listed.json()] == ["@bot", "@sarah"]
    one = await as_bot.get("/api/workers/@sarah")
    assert one.status_code == 200 and one.json()["type"] == "human"
    assert_problem(await as_bot.get("/api/workers/@ghost"), 404)
    assert_problem(await as_bot.get("/api/workers/sarah"), 422)


async def test_register_agent_returns_a_working_key_once(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database
) -> None:
    response = await as_bot.post(
        "/api/workers/agents",
        json={
            "handle": "@qwen-1",
            "name": "Qwen",
            "agent_type": "qwen",
            "capabilities": ["python", "sql"],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["api_key"].startswith("tf_")
    assert body["worker"]["handle"] == "@qwen-1"
    assert body["worker"]["capabilities"] == ["python", "sql"]
    await assert_audited(db, response, "agent_registered", "@bot")
    await assert_audited(db, response, "api_key_created", "@bot")
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert me.json()["handle"] == "@qwen-1"
    keys = await as_bot.get("/api/workers/@qwen-1/keys")
    assert body["api_key"] not in keys.text  # listed by prefix only, never again in full


async def test_register_agent_refusals(as_bot: httpx.AsyncClient, db: Database) -> None:
    before = await audit_count(db)
    taken = await as_bot.post("/api/workers/agents", json={"handle": "@sarah", "name": "Fake"})
    assert_problem(taken, 409)
    bad = await as_bot.post(
        "/api/workers/agents", json={"handle": "@x", "name": "X", "agent_type": "skynet"}
    )
    assert assert_problem(bad, 422)["errors"][0]["field"] == "agent_type"
    assert await audit_count(db) == before


async def test_key_lifecycle_create_revoke_rotate(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, bot: Agent
) -> None:
    helper = await register_agent(db, bot.actor, "@helper", project_role=None)

    created = await as_bot.post("/api/workers/@helper/keys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    second = created.json()
    assert second["key"]["name"] == "ci"
    await assert_audited(db, created, "api_key_created", "@bot")

    listed = await as_bot.get("/api/workers/@helper/keys")
    assert [k["id"] for k in listed.json()] == [helper.key_id, second["key"]["id"]]

    revoked = await as_bot.post(f"/api/workers/@helper/keys/{helper.key_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    await assert_audited(db, revoked, "api_key_revoked", "@bot")
    gone = await client.get("/api/me", headers=helper.headers)
    assert_problem(gone, 401)
    assert 'error="invalid_token"' in gone.headers["www-authenticate"]

    rotated = await as_bot.post(f"/api/workers/@helper/keys/{second['key']['id']}/rotate")
    assert rotated.status_code == 201
    await assert_audited(db, rotated, "api_key_revoked", "@bot")
    await assert_audited(db, rotated, "api_key_created", "@bot")
    old = {"Authorization": f"Bearer {second['api_key']}"}
    new = {"Authorization": f"Bearer {rotated.json()['api_key']}"}
    assert_problem(await client.get("/api/me", headers=old), 401)
    assert (await client.get("/api/me", headers=new)).json()["handle"] == "@helper"


async def test_key_refusals(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor, bot: Agent
) -> None:
    await register_agent(db, owner, "@sarahs-agent", project_role=None)
    await register_agent(db, bot.actor, "@helper", project_role=None)
    before = await audit_count(db)
    assert_problem(await as_bot.get("/api/workers/@sarahs-agent/keys"), 403)
    assert_problem(await as_bot.post("/api/workers/@sarahs-agent/keys", json={}), 403)
    assert_problem(await as_bot.get("/api/workers/@sarah/keys"), 409)  # humans have no keys
    assert_problem(await as_bot.get("/api/workers/@ghost/keys"), 404)
    assert_problem(await as_bot.post("/api/workers/@helper/keys/999/revoke"), 404)
    assert_problem(await as_bot.post("/api/workers/@helper/keys/0/rotate"), 422)
    assert_problem(await as_bot.post("/api/workers/@helper/keys", json={"name": ""}), 422)
    assert await audit_count(db) == before
    first = (await as_bot.get("/api/workers/@helper/keys")).json()[0]["id"]
    assert (await as_bot.post(f"/api/workers/@helper/keys/{first}/revoke")).status_code == 200
    assert_problem(await as_bot.post(f"/api/workers/@helper/keys/{first}/revoke"), 409)

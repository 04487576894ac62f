"""Workers and agents' API keys over REST, including what a revoked or rotated key can still do."""

from __future__ import annotations

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.domain import Role
from taskflow.core.handlers import workers as worker_ops
from tests.http.conftest import Agent, assert_audited, assert_problem, audit_count, register_agent


async def test_me_and_workers(as_bot: httpx.AsyncClient) -> None:
    me = await as_bot.get("/api/me")
    assert me.status_code == 200
    assert (me.json()["handle"], me.json()["type"], me.json()["agent_type"]) == (
        "@bot",
        "agent",
        "claude",
    )
    assert (me.json()["email"], me.json()["sso_subject"], me.json()["active"]) == (
        None,
        None,
        True,
    )
    listed = await as_bot.get("/api/workers")
    assert [w["handle"] for w in listed.json()] == ["@bot", "@sarah"]
    agents = await as_bot.get("/api/workers", params={"type": "agent"})
    humans = await as_bot.get("/api/workers", params={"type": "human"})
    assert [w["handle"] for w in agents.json()] == ["@bot"]
    assert [w["handle"] for w in humans.json()] == ["@sarah"]
    bad = assert_problem(await as_bot.get("/api/workers", params={"type": "robot"}), 422)
    assert bad["errors"][0]["field"] == "type"
    one = await as_bot.get("/api/workers/@sarah")
    assert one.status_code == 200 and one.json()["type"] == "human"
    assert "email" not in one.json() and "sso_subject" not in one.json()
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


async def test_deactivate_and_reactivate_an_agent(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, bot: Agent
) -> None:
    helper = await register_agent(db, bot.actor, "@helper", project_role=Role.MEMBER)
    task = (await as_bot.post("/api/projects/web/tasks", json={"title": "Fix"})).json()["task"]

    off = await as_bot.post("/api/workers/@helper/deactivate")
    assert off.status_code == 200, off.text
    body = off.json()
    assert body["changed"] is True and body["worker"]["active"] is False
    assert [k["id"] for k in body["revoked_keys"]] == [helper.key_id]
    entry = await assert_audited(db, off, "agent_deactivated", "@bot")
    assert entry.details["revoked_keys"][0]["id"] == helper.key_id
    assert_problem(await client.get("/api/me", headers=helper.headers), 401)
    shown = await as_bot.get("/api/workers/@helper")
    assert shown.json()["active"] is False and shown.json()["deactivated_at"]

    before = await audit_count(db)
    assign = await as_bot.patch(f"/api/tasks/{task['id']}/assign", json={"assignee": "@helper"})
    problem = assert_problem(assign, 422)
    assert "deactivated" in problem["detail"] and problem["errors"][0]["field"] == "assignee"
    created = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "New", "assignee": "@helper"}
    )
    assert_problem(created, 422)
    again = await as_bot.post("/api/workers/@helper/deactivate")
    assert again.status_code == 200 and again.json()["changed"] is False
    assert again.json()["revoked_keys"] == []
    assert await audit_count(db) == before
    assert (await as_bot.get(f"/api/tasks/{task['id']}")).json()["task"]["assignee"] is None

    on = await as_bot.post("/api/workers/@helper/reactivate", json={"name": "back"})
    assert on.status_code == 201, on.text
    await assert_audited(db, on, "agent_reactivated", "@bot")
    await assert_audited(db, on, "api_key_created", "@bot")
    new = {"Authorization": f"Bearer {on.json()['api_key']}"}
    me = await client.get("/api/me", headers=new)
    assert me.json()["handle"] == "@helper" and me.json()["active"] is True
    assert_problem(await client.get("/api/me", headers=helper.headers), 401)  # old key stays dead
    assert_problem(await as_bot.post("/api/workers/@helper/reactivate"), 409)


async def test_deactivation_refusals(as_bot: httpx.AsyncClient, db: Database, owner: Actor) -> None:
    await register_agent(db, owner, "@sarahs-agent", project_role=None)
    before = await audit_count(db)
    denied = assert_problem(await as_bot.post("/api/workers/@sarahs-agent/deactivate"), 403)
    assert "registered it" in denied["detail"]
    assert_problem(await as_bot.post("/api/workers/@sarahs-agent/reactivate"), 403)
    assert_problem(await as_bot.post("/api/workers/@ghost/deactivate"), 404)
    assert_problem(await as_bot.post("/api/workers/@sarah/deactivate"), 409)
    assert_problem(await as_bot.post("/api/workers/nobody/deactivate"), 422)
    assert await audit_count(db) == before
    listed = (await as_bot.get("/api/workers", params={"type": "agent"})).json()
    assert all(w["active"] for w in listed)


async def test_unknown_fields_are_refused_naming_the_nearest_one(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    before = await audit_count(db)
    sent = {"handle": "@qwen", "name": "Qwen", "capabilites": ["sql"]}
    body = assert_problem(await as_bot.post("/api/workers/agents", json=sent), 422)
    assert body["errors"] == [
        {
            "location": "body",
            "field": "capabilites",
            "message": "unknown argument 'capabilites': did you mean 'capabilities'?",
            "type": "extra_forbidden",
        }
    ]
    query = assert_problem(await as_bot.get("/api/workers?typ=agent"), 422)
    assert query["errors"][0]["location"] == "query" and query["errors"][0]["field"] == "typ"
    assert "did you mean 'type'?" in query["errors"][0]["message"]
    stray = await as_bot.post("/api/workers/@bot/keys", json={"handle": "@sarah"})
    assert "comes from the path" in assert_problem(stray, 400)["detail"]
    assert await audit_count(db) == before


async def test_a_refusal_names_the_next_step_as_data(
    as_bot: httpx.AsyncClient, db: Database, bot: Agent
) -> None:
    await register_agent(db, bot.actor, "@helper", project_role=None)
    assert (await as_bot.post("/api/workers/@helper/deactivate")).status_code == 200
    refused = assert_problem(await as_bot.post("/api/workers/@helper/keys", json={}), 409)
    assert refused["next_step"] == {
        "operation": "reactivate_agent",
        "arguments": {"handle": "@helper"},
        "method": "POST",
        "path": "/api/workers/@helper/reactivate",
    }
    active = assert_problem(await as_bot.post("/api/workers/@bot/reactivate"), 409)
    assert active["next_step"]["operation"] == "create_api_key"


async def test_a_replayed_registration_answers_only_its_caller(
    as_bot: httpx.AsyncClient, as_sarah: httpx.AsyncClient, db: Database
) -> None:
    """The key is shown once: the same Idempotency-Key replays it to the same worker only."""
    sent, key = {"handle": "@qwen", "name": "Qwen"}, {"Idempotency-Key": "reg-1"}
    first = await as_bot.post("/api/workers/agents", json=sent, headers=key)
    assert first.status_code == 201
    before = await audit_count(db)
    again = await as_bot.post("/api/workers/agents", json=sent, headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await as_sarah.post("/api/workers/agents", json=sent, headers=key)
    assert "Idempotent-Replayed" not in other.headers
    assert first.json()["api_key"] not in assert_problem(other, 409)["detail"]
    assert await audit_count(db) == before


async def test_every_worker_operation_is_served(
    as_bot: httpx.AsyncClient, db: Database, bot: Agent
) -> None:
    """Each declared route of the workers aggregate answers on its method and path."""
    helper = await register_agent(db, bot.actor, "@helper", project_role=None)
    h = "/api/workers/@helper"
    calls = {
        "whoami": ("GET", "/api/me", None, 200),
        "list_workers": ("GET", "/api/workers", None, 200),
        "get_worker": ("GET", h, None, 200),
        "register_agent": ("POST", "/api/workers/agents", {"handle": "@q", "name": "Q"}, 201),
        "list_api_keys": ("GET", f"{h}/keys", None, 200),
        "create_api_key": ("POST", f"{h}/keys", {"name": "ci"}, 201),
        "rotate_api_key": ("POST", f"{h}/keys/{helper.key_id}/rotate", None, 201),
        "revoke_api_key": ("POST", f"{h}/keys/{helper.key_id}/revoke", None, 409),  # rotated
        "deactivate_agent": ("POST", f"{h}/deactivate", None, 200),
        "reactivate_agent": ("POST", f"{h}/reactivate", {}, 201),
    }
    declared = {
        name: (op.rest.method, op.rest.path)
        for name, op in REGISTRY.items()
        if op.handler.__module__ == worker_ops.__name__ and op.rest is not None
    }
    assert set(declared) == set(calls)
    for name, (method, path, body, status) in calls.items():
        response = await as_bot.request(method, path, json=body)
        assert response.status_code == status, (name, response.text)

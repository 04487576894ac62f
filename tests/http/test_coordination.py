"""Coordination over REST: dependencies (a cycle is a 409 naming it), claims that respect
blockers, held subtrees and capabilities, leases (lease_seconds, heartbeat, expiry)."""

from __future__ import annotations

import asyncio

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import AddMember, RegisterAgent
from taskflow.core.services import projects, workers
from tests.http.conftest import (
    Agent,
    assert_audited,
    assert_problem,
    audit_count,
    audit_for,
    register_agent,
)


async def _task(http: httpx.AsyncClient, title: str = "Work", **fields: object) -> int:
    response = await http.post("/api/projects/web/tasks", json={"title": title, **fields})
    assert response.status_code == 201, response.text
    return int(response.json()["task"]["id"])


async def test_dependencies_add_remove_and_a_cycle_refused(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    a, b, c = [await _task(as_bot, n) for n in "abc"]
    added = await as_bot.post(f"/api/tasks/{b}/dependencies", json={"blocked_by": [a]})
    assert added.status_code == 200, added.text
    assert added.json()["blocked_by"] == [{"id": a, "done": False}]
    assert added.headers["etag"] == '"2"'
    entries = {e.entity_id: e for e in await audit_for(db, added)}
    assert entries[b].details == {"blocked_by": [a]} and entries[a].details == {"blocks": b}
    assert {e.action for e in entries.values()} == {"dependency_added"}
    await as_bot.post(f"/api/tasks/{c}/dependencies", json={"blocked_by": [b]})

    before = await audit_count(db)
    cycle = await as_bot.post(f"/api/tasks/{a}/dependencies", json={"blocked_by": [c]})
    body = assert_problem(cycle, 409, "conflict")
    assert f"({a} -> {c} -> {b} -> {a};" in body["detail"]
    assert await audit_count(db) == before

    started = await as_bot.post(f"/api/tasks/{b}/start")
    assert f"waits for open task {a}" in assert_problem(started, 409)["detail"]
    ready = await as_bot.get("/api/projects/web/tasks", params={"ready": "true"})
    assert [t["id"] for t in ready.json()["items"]] == [a]
    blocked = await as_bot.get("/api/projects/web/tasks", params={"blocked": "true"})
    assert [t["id"] for t in blocked.json()["items"]] == [b, c]

    removed = await as_bot.delete(f"/api/tasks/{b}/dependencies/{a}")
    assert removed.status_code == 200 and removed.json()["blocked_by"] == []
    entries = {e.entity_id: e for e in await audit_for(db, removed)}
    assert entries[b].details == {"unblocked_by": [a]}
    assert entries[a].details == {"no_longer_blocks": b}
    missing = await as_bot.delete(f"/api/tasks/{b}/dependencies/{a}")
    assert_problem(missing, 404)
    bad = await as_bot.post(f"/api/tasks/{b}/dependencies", json={"blocked_by": ["x"]})
    assert_problem(bad, 422)


async def test_claim_skips_blocked_and_held_and_routes_by_capability(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    other = await register_agent(db, owner, "@other", project_role=Role.MEMBER)
    issued = await workers.register_agent(
        db, owner, RegisterAgent(handle="@dba", name="dba", capabilities=["sql"])
    )
    await projects.add_member(db, owner, "web", AddMember(handle="@dba"))
    dba = {"Authorization": f"Bearer {issued.api_key}"}

    parent = await _task(as_bot, "feature", priority="critical")
    claimed = await as_bot.post("/api/projects/web/claim", json={"lease_seconds": 60})
    assert claimed.json()["id"] == parent
    assert claimed.json()["lease_expires_at"] is not None
    await as_bot.post(f"/api/tasks/{parent}/subtasks", json=[{"title": "part"}])
    free = await _task(as_bot, "stray", parent_id=parent, priority="critical")  # held subtree
    needs = await _task(as_bot, "migrate", required_capabilities=["sql"], priority="high")
    blocker = await _task(as_bot, "blocker", priority="low")
    waiting = await _task(as_bot, "waiting", priority="critical")
    await as_bot.post(f"/api/tasks/{waiting}/dependencies", json={"blocked_by": [blocker]})
    # The free subtask of the held parent is the bot's own: assigned to it when it made it.
    assert (await as_bot.get(f"/api/tasks/{free}")).json()["task"]["assignee"] == "@bot"

    got = await client.post("/api/projects/web/claim", json={}, headers=other.headers)
    assert got.json()["id"] == blocker, got.text  # not `waiting`, not `migrate`, not the parts
    refused = await client.post("/api/projects/web/claim", json={}, headers=other.headers)
    assert_problem(refused, 404)
    routed = await client.post("/api/projects/web/claim", json={}, headers=dba)
    assert routed.json()["id"] == needs
    listed = await as_bot.get("/api/projects/web/tasks", params={"required_capabilities": "sql"})
    assert [t["id"] for t in listed.json()["items"]] == [needs]


async def test_a_lease_expires_and_another_agent_claims_it(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    other: Agent = await register_agent(db, owner, "@other", project_role=Role.MEMBER)
    task_id = await _task(as_bot)
    claimed = await as_bot.post("/api/projects/web/claim", json={"lease_seconds": 1})
    assert claimed.status_code == 200
    beat = await as_bot.post(f"/api/tasks/{task_id}/heartbeat", json={"lease_seconds": 1})
    assert beat.status_code == 200 and beat.json()["lease_expires_at"] is not None
    await assert_audited(db, beat, "lease_renewed", "@bot")
    not_yours = await client.post(f"/api/tasks/{task_id}/heartbeat", headers=other.headers)
    assert_problem(not_yours, 409)
    await asyncio.sleep(1.3)
    taken = await client.post("/api/projects/web/claim", json={}, headers=other.headers)
    assert taken.json()["id"] == task_id and taken.json()["assignee"] == "@other"
    expired = await assert_audited(db, taken, "lease_expired", "@bot")
    assert expired.details["applied_by"] == "claim_next"
    trail = (await as_bot.get(f"/api/tasks/{task_id}/audit")).json()["items"]
    assert [e["action"] for e in trail].count("lease_expired") == 1
    too_long = await as_bot.post("/api/projects/web/claim", json={"lease_seconds": 100_000})
    assert "at most 86400" in assert_problem(too_long, 422)["detail"] + too_long.text

"""API key scopes over REST: chosen at creation, listed, enforced; the spare-key scenario closed;
quotas; separation of duties through one's own agent; the client's X-Request-ID kept beside the
server's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from taskflow.core import audit
from taskflow.core.db import Database
from taskflow.core.models import AuditEntry, Task
from tests.http.conftest import BASE_URL, Agent, assert_problem, audit_count


async def tasks_count(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


async def entry_of_request(db: Database, request_id: str) -> AuditEntry:
    async with db.transaction() as session:
        return (
            await session.scalars(select(AuditEntry).where(AuditEntry.request_id == request_id))
        ).one()


@pytest.fixture
async def keyed(api: Starlette) -> AsyncIterator[object]:
    """A factory of clients for a given bearer token."""
    clients: list[httpx.AsyncClient] = []

    def make(token: str) -> httpx.AsyncClient:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api),
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {token}"},
        )
        clients.append(http)
        return http

    yield make
    for http in clients:
        await http.aclose()


async def test_a_read_only_project_limited_key_is_listed_and_enforced(
    as_sarah: httpx.AsyncClient, bot: Agent, keyed, db: Database
) -> None:
    made = await as_sarah.post(
        "/api/workers/@bot/keys", json={"name": "ro", "read_only": True, "projects": ["web"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["key"]["read_only"] is True and made.json()["key"]["projects"] == ["web"]
    listed = (await as_sarah.get("/api/workers/@bot/keys")).json()
    ro = next(k for k in listed if k["name"] == "ro")
    assert (ro["read_only"], ro["projects"], ro["manage_agents"]) == (True, ["web"], False)
    await as_sarah.post("/api/projects/web/tasks", json={"title": "In web"})
    await as_sarah.post("/api/projects/default/tasks", json={"title": "In default"})

    reader = keyed(made.json()["api_key"])
    assert [p["slug"] for p in (await reader.get("/api/projects")).json()] == ["web"]
    assert [t["title"] for t in (await reader.get("/api/tasks")).json()["items"]] == ["In web"]
    assert_problem(await reader.get("/api/projects/default"), 404, "not-found")
    before, entries = await tasks_count(db), await audit_count(db)
    refused = assert_problem(
        await reader.post("/api/projects/web/tasks", json={"title": "No"}), 403, "forbidden"
    )
    assert "read-only" in refused["detail"] and "write scope" in refused["detail"]
    assert_problem(await reader.post("/api/workers/@bot/keys", json={"name": "x"}), 403)
    assert (await tasks_count(db), await audit_count(db)) == (before, entries)


async def test_a_project_limited_key_creates_only_in_its_projects_and_is_named_in_the_audit(
    as_sarah: httpx.AsyncClient, bot: Agent, keyed, db: Database
) -> None:
    made = (await as_sarah.post("/api/workers/@bot/keys", json={"projects": ["web"]})).json()
    limited = keyed(made["api_key"])
    before = await tasks_count(db)
    assert_problem(
        await limited.post("/api/projects/default/tasks", json={"title": "Elsewhere"}), 404
    )
    assert await tasks_count(db) == before
    created = await limited.post("/api/projects/web/tasks", json={"title": "Here"})
    assert created.status_code == 201, created.text
    entry = await entry_of_request(db, created.headers["x-request-id"])
    assert entry.actor_key == made["key"]["display_prefix"]


async def test_the_leaked_key_scenario_is_closed(
    as_sarah: httpx.AsyncClient, bot: Agent, keyed, db: Database
) -> None:
    """The probe's steps: the agent mints a spare with its own key (refused: its key lacks
    manage_agents); with a key that may, whatever it mints stays in its owner's reach."""
    default_key = (await as_sarah.post("/api/workers/@bot/keys", json={"name": "d"})).json()
    assert default_key["key"]["manage_agents"] is False  # what a key gets unless asked
    leaked = keyed(default_key["api_key"])
    refused = assert_problem(await leaked.post("/api/workers/@bot/keys", json={}), 403)
    assert "manage_agents" in refused["detail"]
    assert_problem(
        await leaked.post("/api/workers/agents", json={"handle": "@x", "name": "x"}), 403
    )

    manager_key = (
        await as_sarah.post("/api/workers/@bot/keys", json={"name": "m", "manage_agents": True})
    ).json()["api_key"]
    manager = keyed(manager_key)
    spare = (await manager.post("/api/workers/@bot/keys", json={"name": "spare"})).json()
    sub = await manager.post("/api/workers/agents", json={"handle": "@sub", "name": "Sub"})
    assert sub.status_code == 201, sub.text

    managed = (await as_sarah.get("/api/workers", params={"managed": "true"})).json()
    assert [w["handle"] for w in managed] == ["@bot", "@sub"]
    assert spare["key"]["id"] in [
        k["id"] for k in (await as_sarah.get("/api/workers/@bot/keys")).json()
    ]
    revoked = await as_sarah.post(f"/api/workers/@bot/keys/{spare['key']['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert_problem(await keyed(spare["api_key"]).get("/api/me"), 401)
    assert (await as_sarah.post("/api/workers/@sub/deactivate")).status_code == 200
    assert_problem(await keyed(sub.json()["api_key"]).get("/api/me"), 401)


async def test_registering_over_the_quota_is_refused(
    as_sarah: httpx.AsyncClient, bot: Agent, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKFLOW_MAX_AGENTS_PER_WORKER", "1")  # @bot is the one
    entries = await audit_count(db)
    refused = assert_problem(
        await as_sarah.post("/api/workers/agents", json={"handle": "@more", "name": "More"}),
        403,
    )
    assert "TASKFLOW_MAX_AGENTS_PER_WORKER=1" in refused["detail"]
    assert await audit_count(db) == entries


async def test_the_registrant_cannot_approve_its_agents_work(
    as_sarah: httpx.AsyncClient, as_bot: httpx.AsyncClient, db: Database
) -> None:
    policy = await as_sarah.put("/api/projects/web", json={"approval_policy": "review_required"})
    assert policy.status_code == 200, policy.text
    task = (await as_sarah.post("/api/projects/web/tasks", json={"title": "Work"})).json()
    task_id = task["task"]["id"] if "task" in task else task["id"]
    assert (await as_bot.post(f"/api/tasks/{task_id}/start")).status_code == 200
    assert (await as_bot.post(f"/api/tasks/{task_id}/review")).status_code == 200
    entries = await audit_count(db)
    refused = assert_problem(await as_sarah.post(f"/api/tasks/{task_id}/approve"), 403)
    assert "an agent you registered" in refused["detail"]
    assert await audit_count(db) == entries


async def test_the_clients_request_id_is_kept_beside_the_servers(
    as_bot: httpx.AsyncClient, bot: Agent, db: Database
) -> None:
    created = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "Traced"}, headers={"X-Request-ID": "mine-7"}
    )
    assert created.status_code == 201, created.text
    server_id = created.headers["x-request-id"]
    assert server_id != "mine-7" and len(server_id) == 32
    assert created.headers["x-client-request-id"] == "mine-7"
    entry = await entry_of_request(db, server_id)  # the one-statement create (by key)
    assert (entry.client_request_id, entry.actor_key) == ("mine-7", bot.token[:11])
    me = await as_bot.get("/api/me", headers={"X-Request-ID": "x" * 500})
    assert "x-client-request-id" not in me.headers  # unsafe: dropped, never stored
    assert (await audit.verify(db)).ok  # the new columns are in the hash, and verify agrees

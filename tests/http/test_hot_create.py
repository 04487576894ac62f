"""The hot create path: `POST /api/projects/{p}/tasks` with an API key checks the key inside the
one statement that writes the task and its audit entry. These hold it to what the ordinary path
promises: the same answer and entry, a key refused on its very next request once revoked,
expired or its agent deactivated, nothing written for a refusal, and the right refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.auth.keys import generate_api_key
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import AddMember, CreateProject
from taskflow.core.services import projects, workers
from tests.http.conftest import (
    Agent,
    assert_audited,
    assert_problem,
    audit_count,
    register_agent,
)

TASK = {"title": "Write the report", "tags": ["q4"], "priority": "high"}


async def _tasks(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM tasks")))


async def _refused_without_a_trace(
    db: Database, client: httpx.AsyncClient, agent: Agent, status: int, body: object = TASK
) -> dict:
    entries, tasks = await audit_count(db), await _tasks(db)
    response = await client.post("/api/projects/default/tasks", json=body, headers=agent.headers)
    problem = assert_problem(response, status)
    assert await audit_count(db) == entries and await _tasks(db) == tasks
    return problem


async def test_a_create_by_key_answers_and_audits_as_the_ordinary_path(
    db: Database, as_bot: httpx.AsyncClient, bot: Agent
) -> None:
    response = await as_bot.post(
        "/api/projects/default/tasks", json=TASK, headers={"X-Request-ID": "hot-1"}
    )
    assert response.status_code == 201, response.text
    task = response.json()["task"]
    assert task["project"] == "default"
    assert task["created_by"] == "@bot" and task["created_by_id"] == bot.actor.worker_id
    assert task["title"] == "Write the report" and task["priority"] == "high"
    assert task["tags"] == ["q4"] and task["version"] == 1 and task["depth"] == 0
    assert response.headers["etag"] == '"1"'
    entry = await assert_audited(db, response, "created", "@bot", parent_id=None)
    assert entry.client_request_id == "hot-1" and entry.entity_id == task["id"] == entry.task_id
    assert entry.request_id == response.headers["x-request-id"]
    assert entry.actor_key == bot.token[:11]  # the key, named by its prefix
    assert entry.details["new"]["title"] == "Write the report"
    assert entry.actor_type == "agent" and entry.actor_id == bot.actor.worker_id
    # The same entry the ordinary path writes: a slug-less create through the core's own path
    # (an idempotency key takes it) hashes the same way, and every chain verifies.
    other = await as_bot.post(
        "/api/projects/default/tasks", json=TASK, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 201
    plain = await assert_audited(db, other, "created", "@bot")
    assert plain.details == {**entry.details}
    assert (await audit.verify(db)).ok


async def test_a_numeric_reference_prefers_the_project_with_that_slug(
    db: Database, owner: Actor, as_bot: httpx.AsyncClient, bot: Agent
) -> None:
    web = await projects.get_project(db, owner, "web")
    twin = await projects.create_project(db, owner, CreateProject(slug=str(web.id), name="Twin"))
    await projects.add_member(db, owner, twin.slug, AddMember(handle="@bot", role=Role.MEMBER))
    response = await as_bot.post(f"/api/projects/{web.id}/tasks", json=TASK)
    assert response.status_code == 201, response.text
    assert response.json()["task"]["project"] == twin.slug
    assert response.json()["task"]["project_id"] == twin.id


async def test_a_revoked_key_is_refused_on_its_next_create(
    db: Database, owner: Actor, client: httpx.AsyncClient, bot: Agent
) -> None:
    first = await client.post("/api/projects/default/tasks", json=TASK, headers=bot.headers)
    assert first.status_code == 201
    await workers.revoke_api_key(db, owner, "@bot", bot.key_id)
    await _refused_without_a_trace(db, client, bot, 401)


async def test_an_expired_key_is_refused(
    db: Database, client: httpx.AsyncClient, bot: Agent
) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET expires_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "id": bot.key_id},
        )
    await _refused_without_a_trace(db, client, bot, 401)


async def test_a_deactivated_agent_is_refused_on_its_next_create(
    db: Database, client: httpx.AsyncClient, bot: Agent
) -> None:
    async with db.engine.begin() as conn:  # its keys stay unrevoked: the agent row decides
        await conn.execute(
            text("UPDATE workers SET deactivated_at = now() WHERE id = :id"),
            {"id": bot.actor.worker_id},
        )
    await _refused_without_a_trace(db, client, bot, 401)


async def test_an_unknown_key_hears_401_before_anything_about_its_body(
    db: Database, owner: Actor, client: httpx.AsyncClient, bot: Agent
) -> None:
    stranger = Agent("@nobody", generate_api_key()[0], 0, bot.actor)
    await _refused_without_a_trace(db, client, stranger, 401, body={"title": ""})
    await workers.revoke_api_key(db, owner, "@bot", bot.key_id)
    await _refused_without_a_trace(db, client, bot, 401, body={"nope": 1})
    await _refused_without_a_trace(db, client, bot, 401, body=[1, 2])


async def test_a_viewer_is_forbidden_and_a_stranger_project_not_found(
    db: Database, owner: Actor, client: httpx.AsyncClient
) -> None:
    viewer = await register_agent(db, owner, "@looker", project_role=Role.VIEWER)
    problem = await _refused_without_a_trace(db, client, viewer, 403)
    assert problem["type"] == "urn:taskflow:problem:forbidden"
    outsider = await register_agent(db, owner, "@outsider", project_role=None)
    problem = await _refused_without_a_trace(db, client, outsider, 404)
    assert problem["type"] == "urn:taskflow:problem:not-found"


async def test_a_create_records_the_keys_use_once_a_minute(
    db: Database, client: httpx.AsyncClient, bot: Agent
) -> None:
    async def last_used() -> datetime | None:
        async with db.engine.connect() as conn:
            return await conn.scalar(
                text("SELECT last_used_at FROM api_keys WHERE id = :id"), {"id": bot.key_id}
            )

    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET last_used_at = NULL WHERE id = :id"), {"id": bot.key_id}
        )
    response = await client.post("/api/projects/default/tasks", json=TASK, headers=bot.headers)
    assert response.status_code == 201
    first = await last_used()
    assert first is not None
    again = await client.post("/api/projects/default/tasks", json=TASK, headers=bot.headers)
    assert again.status_code == 201
    assert await last_used() == first  # within the minute: no write

"""The live feed against real servers: SSE clients over HTTP while changes arrive over MCP and
REST, a reconnect that resumes by `Last-Event-ID`, two replicas on one database, visibility,
mentions, and a rolled-back change that announces nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from taskflow.core.db import Database
from taskflow.core.schemas import CreateProject, CreateTask
from taskflow.core.services import projects, tasks
from tests.support.mcp_http import tool_call
from tests.support.servers import serve
from tests.support.sse import SseReader
from tests.support.team import PROJECT, seed_team

pytestmark = pytest.mark.slow


async def mcp_tool(http: httpx.AsyncClient, name: str, arguments: dict) -> dict:
    return await tool_call(http, name, arguments, path="/mcp?toolsets=all")


async def visible_ids_after(db: Database, after: int, project_ids: set[int]) -> list[int]:
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        rows = await raw.fetch(
            "SELECT id FROM audit_log WHERE id > $1 AND (project_id IS NULL OR "
            "project_id = ANY($2::bigint[])) ORDER BY xact, id",
            after,
            list(project_ids),
        )
    return [r["id"] for r in rows]


async def _max_entry_id(db: Database) -> int:
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        return int(await raw.fetchval("SELECT max(id) FROM audit_log"))


async def test_sse_live_resume_visibility_mentions_rollback(db: Database, db_url: str) -> None:
    team = await seed_team(db, agents=2, open_tasks=2)
    secret = await projects.create_project(
        db, team.owner, CreateProject(slug="secret", name="Not for agents")
    )
    keys = [{"Authorization": f"Bearer {k}"} for k in team.keys]
    with serve("feed", db_url) as server:
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=keys[0], timeout=30) as a0,
            httpx.AsyncClient(base_url=server.base_url, headers=keys[1], timeout=30) as a1,
        ):
            # 1. A change over MCP reaches an SSE client within a second.
            async with SseReader(a0) as live:
                assert live.status == 200
                made = await mcp_tool(a1, "create_task", {"project": PROJECT, "title": "over MCP"})
                answered = asyncio.get_running_loop().time()
                event = await live.next(5)
                assert event.data["action"] == "created" and event.data["via"] == "mcp"
                assert event.data["entity_id"] == made["structuredContent"]["task"]["id"]
                assert event.received - answered < 1.0, "seen within a second"
                last_id = event.id
                # 2. a change in a project the agent is not in never reaches it
                await tasks.create_task(
                    db, team.owner, CreateTask(project="secret", title="hidden")
                )
                # 3. a change rolled back after it wrote (the second subtask's assignee is
                # unknown) announces nothing
                refused = await a1.post(
                    f"/api/projects/{PROJECT}/tasks",
                    json={
                        "title": "half",
                        "subtasks": [{"title": "ok"}, {"title": "bad", "assignee": "@nobody"}],
                    },
                )
                assert refused.status_code == 422, refused.text
                assert await live.quiet(0.8) == [], "nothing hidden, nothing rolled back"
                newest = await _max_entry_id(db)
                await a1.post(f"/api/tasks/{team.task_ids[1]}/comments", json={"body": "after"})
                after = await live.next()
                assert after.data["details"]["body"] == "after"
                assert int(after.id) > newest + 1, "the rolled-back change did write entries"
                last_id = after.id

            # 4. While the client is away, changes arrive over REST and MCP; resuming with
            # Last-Event-ID delivers each exactly once, in order.
            task_id = team.task_ids[0]
            await a1.post(f"/api/tasks/{task_id}/start", json={})
            for n in range(5):
                await a1.post(f"/api/tasks/{task_id}/comments", json={"body": f"away {n}"})
            await mcp_tool(a1, "update_progress", {"task_id": task_id, "percent": 40})
            project_ids = {(await a0.get(f"/api/projects/{PROJECT}")).json()["id"]}
            expected = await visible_ids_after(db, int(last_id), project_ids)
            assert len(expected) == 7
            async with SseReader(a0, headers={"Last-Event-ID": last_id}) as again:
                got = await again.take(len(expected))
                assert [int(e.id) for e in got] == expected
                assert await again.quiet(0.5) == [], "and nothing twice"
            async with SseReader(a0, params={"after": last_id, "action": "commented"}) as q:
                bodies = [e.data["details"]["body"] for e in await q.take(5)]
                assert bodies == [f"away {n}" for n in range(5)]

            # 5. A mention reaches the mentioned agent's feed (mine=true), nobody else's.
            async with (
                SseReader(a1, params={"mine": "true"}) as mentioned,
                SseReader(a0, params={"mine": "true", "action": "commented"}) as other,
            ):
                said = await a0.post(
                    f"/api/tasks/{team.task_ids[1]}/comments",
                    json={"body": "@agent-001 can you take this?"},
                )
                assert said.status_code == 201 and said.json()["mentions"] == ["@agent-001"]
                event = await mentioned.next()
                assert event.data["action"] == "commented"
                assert event.data["details"]["mentions"] == ["@agent-001"]
                assert await other.quiet(0.5) == []
            changes = await mcp_tool(a1, "list_changes", {"after": int(last_id), "mine": True})
            assert any(e["action"] == "commented" for e in changes["structuredContent"]["items"]), (
                "and list_changes(mine) finds it too"
            )

            # Bad input is refused in REST's words, before any stream opens.
            bad = await a0.get("/api/events", params={"project": "secret"})
            assert bad.status_code == 404
            assert bad.headers["content-type"].startswith("application/problem+json")
            bad = await a0.get("/api/events", headers={"Last-Event-ID": "nope"})
            assert bad.status_code == 422
            anonymous = await httpx.AsyncClient(base_url=server.base_url).get("/api/events")
            assert anonymous.status_code == 401
        await asyncio.sleep(0.2)
        assert server.tracebacks() == 0, server.logs()[-3000:]
    assert secret.slug == "secret"


async def test_two_replicas_deliver_each_others_events(db: Database, db_url: str) -> None:
    team = await seed_team(db, agents=1, open_tasks=1)
    auth = {"Authorization": f"Bearer {team.keys[0]}"}
    with serve("replica-a", db_url) as a, serve("replica-b", db_url) as b:
        async with (
            httpx.AsyncClient(base_url=a.base_url, headers=auth, timeout=30) as on_a,
            httpx.AsyncClient(base_url=b.base_url, headers=auth, timeout=30) as on_b,
            SseReader(on_a) as sse_a,
            SseReader(on_b) as sse_b,
        ):
            task_id = team.task_ids[0]
            for n in range(6):
                writer = on_b if n % 2 == 0 else on_a
                answer = await writer.post(
                    f"/api/tasks/{task_id}/comments", json={"body": f"round {n}"}
                )
                assert answer.status_code == 201
            for reader in (sse_a, sse_b):
                got = await reader.take(6)
                assert [e.data["details"]["body"] for e in got] == [f"round {n}" for n in range(6)]
                assert await reader.quiet(0.3) == []
        assert a.tracebacks() + b.tracebacks() == 0


async def test_a_revoked_key_ends_its_stream(db: Database, db_url: str) -> None:
    team = await seed_team(db, agents=1, open_tasks=1)
    auth = {"Authorization": f"Bearer {team.keys[0]}"}
    with serve("revoke", db_url, {"FEED_RECHECK_SECONDS": "0.5"}) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=30) as http:
            async with SseReader(http) as live:
                await http.post(f"/api/tasks/{team.task_ids[0]}/comments", json={"body": "hi"})
                assert (await live.next()).data["action"] == "commented"
                keys = (await http.get("/api/workers/@agent-000/keys")).json()
                revoked = await http.post(f"/api/workers/@agent-000/keys/{keys[0]['id']}/revoke")
                assert revoked.status_code == 200
                assert live._task is not None
                await asyncio.wait_for(asyncio.shield(live._task), 5)  # the stream ended
            again = await http.get("/api/events")
            assert again.status_code == 401
        assert server.tracebacks() == 0, server.logs()[-3000:]

"""Two server processes on one database are one state: no stale read, stale writes refused,
concurrent claims over both replicas each task once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from taskflow.core.db import Database
from tests.support.mcp_http import tool_call
from tests.support.servers import serve
from tests.support.team import (
    PROJECT,
    chain_verifies,
    claims_per_task,
    seed_team,
    task_actions,
    versions_without_entries,
)

pytestmark = pytest.mark.slow

ROUNDS = 20


async def mcp_tool(http: httpx.AsyncClient, name: str, arguments: dict) -> dict:
    return await tool_call(http, name, arguments)


async def test_two_replicas_one_state(db: Database, db_url: str) -> None:
    team = await seed_team(db, agents=2, open_tasks=10)
    auth = {"Authorization": f"Bearer {team.keys[0]}"}
    with serve("replica-a", db_url) as a, serve("replica-b", db_url) as b:
        async with (
            httpx.AsyncClient(base_url=a.base_url, headers=auth, timeout=30) as on_a,
            httpx.AsyncClient(base_url=b.base_url, headers=auth, timeout=30) as on_b,
        ):
            made = await on_a.post(f"/api/projects/{PROJECT}/tasks", json={"title": "round 0"})
            assert made.status_code == 201
            task_id = made.json()["task"]["id"]
            version = made.json()["task"]["version"]
            here, there = on_a, on_b
            for n in range(1, ROUNDS + 1):  # write here, read there, based on what was read
                edit = await here.put(
                    f"/api/tasks/{task_id}",
                    json={"title": f"round {n}"},
                    headers={"If-Match": f'"{version}"'},
                )
                assert edit.status_code == 200, edit.text
                read = (await there.get(f"/api/tasks/{task_id}")).json()["task"]
                assert (read["title"], read["version"]) == (f"round {n}", edit.json()["version"])
                version = read["version"]
                here, there = there, here

            stale = await on_a.put(
                f"/api/tasks/{task_id}", json={"title": "stale"}, headers={"If-Match": '"1"'}
            )
            stale_mcp = await mcp_tool(
                on_b, "update_task", {"task_id": task_id, "title": "stale", "expected_version": 1}
            )
            after = (await on_a.get(f"/api/tasks/{task_id}")).json()["task"]

            claims = await asyncio.gather(
                *(
                    client.post(f"/api/projects/{PROJECT}/claim", json={})
                    for client in [on_a, on_b] * 10
                )
            )
        tracebacks = a.tracebacks() + b.tracebacks()
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale_mcp["isError"] and "stale-version" in str(stale_mcp)
    assert (after["title"], after["version"]) == (f"round {ROUNDS}", version), "nothing changed"

    won = [c.json()["id"] for c in claims if c.status_code == 200]
    open_tasks = sorted([*team.task_ids, task_id])
    assert sorted(won) == open_tasks, "every open task claimed exactly once, over both replicas"
    assert all(c.status_code < 500 for c in claims)
    assert all(n == 1 for n in (await claims_per_task(db)).values())
    actions = await task_actions(db)
    assert actions["updated"] == ROUNDS and actions["claimed"] == len(won)
    assert await versions_without_entries(db) == []
    assert await chain_verifies(db)
    assert tracebacks == 0

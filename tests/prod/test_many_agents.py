"""32 agents at once against a real server process: nothing claimed twice, nothing unaudited.

Half the agents speak REST (httpx), half MCP (the official SDK client over Streamable HTTP),
each with its own API key, all at the same time against one `taskflow serve` process; each
claims the next open task and reports progress on it until nothing is left to claim.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from taskflow.core.db import Database
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

AGENTS = 32
OPEN_TASKS = 64
MAX_CYCLES = 20  # per agent: bounded, whatever the server answers
DEADLINE_S = 90.0


@dataclass
class Tally:
    claimed: list[int] = field(default_factory=list)
    progressed: int = 0
    refused: int = 0
    server_errors: list[str] = field(default_factory=list)


async def rest_agent(base: str, key: str, tally: Tally, deadline: float) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as http:
        for _ in range(MAX_CYCLES):
            if time.monotonic() > deadline:
                return
            claim = await http.post(f"/api/projects/{PROJECT}/claim", json={})
            if claim.status_code >= 500:
                tally.server_errors.append(f"claim {claim.status_code} {claim.text[:200]}")
            if claim.status_code != 200:
                tally.refused += 1
                return  # nothing left to claim
            task_id = claim.json()["id"]
            tally.claimed.append(task_id)
            progress = await http.patch(
                f"/api/tasks/{task_id}/progress", json={"progress_percent": 50, "note": "half"}
            )
            if progress.status_code >= 500:
                tally.server_errors.append(f"progress {progress.status_code}")
            tally.progressed += progress.status_code == 200


async def mcp_agent(base: str, key: str, tally: Tally, deadline: float) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        for _ in range(MAX_CYCLES):
            if time.monotonic() > deadline:
                return
            claim = await client.call_tool("claim_next_task", {"project": PROJECT})
            if claim.is_error:
                tally.refused += 1
                return
            task_id = claim.structured_content["id"]
            tally.claimed.append(task_id)
            progress = await client.call_tool(
                "update_progress", {"task_id": task_id, "percent": 50, "note": "half"}
            )
            tally.progressed += not progress.is_error


async def test_32_agents_claim_and_report_without_double_claims_or_lost_audit(
    db: Database, db_url: str
) -> None:
    team = await seed_team(db, agents=AGENTS, open_tasks=OPEN_TASKS)
    before = await task_actions(db)
    tally = Tally()
    with serve("agents", db_url) as server:
        deadline = time.monotonic() + DEADLINE_S
        await asyncio.gather(
            *(
                (mcp_agent if i % 2 else rest_agent)(server.base_url, key, tally, deadline)
                for i, key in enumerate(team.keys)
            )
        )
        tracebacks = server.tracebacks()
    after = await task_actions(db)

    assert tally.server_errors == [] and tracebacks == 0
    assert sorted(tally.claimed) == sorted(team.task_ids), "every task claimed, none twice"
    assert all(n == 1 for n in (await claims_per_task(db)).values())
    assert tally.refused == AGENTS, "each agent stopped on 'nothing to claim'"
    assert after["claimed"] - before["claimed"] == len(tally.claimed)
    assert after["progressed"] - before["progressed"] == tally.progressed == OPEN_TASKS
    assert sum(after.values()) - sum(before.values()) == len(tally.claimed) + tally.progressed
    assert await versions_without_entries(db) == []
    assert await chain_verifies(db)

"""`taskflow serve` releases an expired claim by itself, with nobody reading or claiming."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from taskflow.core.db import Database
from tests.core.conftest import sql
from tests.support.servers import serve
from tests.support.team import PROJECT, chain_verifies, seed_team

pytestmark = pytest.mark.slow


async def test_the_served_process_sweeps_expired_leases(db: Database, db_url: str) -> None:
    team = await seed_team(db, agents=1, open_tasks=1)
    auth = {"Authorization": f"Bearer {team.keys[0]}"}
    with serve("sweeper", db_url, {"TASKFLOW_LEASE_SWEEP_SECONDS": "0.3"}) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=30) as http:
            claimed = await http.post(f"/api/projects/{PROJECT}/claim", json={"lease_seconds": 1})
            assert claimed.status_code == 200, claimed.text
            task_id = claimed.json()["id"]
            for _ in range(50):  # no request from here on: only the sweep can release it
                await asyncio.sleep(0.1)
                rows = await sql(db, "SELECT status FROM tasks WHERE id = :i", i=task_id)
                if rows[0][0] == "pending":
                    break
        tracebacks = server.tracebacks()
    entries = await sql(
        db,
        "SELECT actor_handle, via, details->>'applied_by' FROM audit_log "
        "WHERE action = 'lease_expired'",
    )
    assert entries == [("@agent-000", "core", "housekeeping")]
    assert await chain_verifies(db)
    assert tracebacks == 0

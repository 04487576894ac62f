"""Coordination through the CLI: dependencies (a cycle refused), claims that respect them and
required capabilities, leases that expire and a heartbeat that renews one."""

from __future__ import annotations

import asyncio

from taskflow.core.db import Database
from tests.cli.conftest import Cli, audit_rows, last_audit_id, snapshot


async def test_dependencies_gate_start_and_a_cycle_is_refused(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Schema")
    await sarah.ok("add", "API")
    await sarah.ok("add", "UI")
    out = (await sarah.ok("depend", "2", "--on", "1")).stdout
    assert "#2 API waits for #1" in out
    data = await sarah.json("depend", "3", "--on", "2")
    assert data["blocked_by"] == [{"id": 2, "done": False}]
    before = await snapshot(db)
    err = await sarah.refused("depend", "1", "--on", "3")
    assert "cycle (1 -> 3 -> 2 -> 1" in err
    err = await sarah.refused("start", "2")
    assert "waits for open task 1" in err
    assert await snapshot(db) == before
    assert [t["id"] for t in await sarah.json("list", "--ready")] == [1]
    assert [t["id"] for t in await sarah.json("list", "--blocked")] == [2, 3]
    assert "Waits for" in (await sarah.ok("show", "2")).stdout
    await sarah.ok("depend", "2", "--remove", "1")
    assert "Started #2" in (await sarah.ok("start", "2")).stdout
    await sarah.refused("depend", "2", code=2)  # nothing to change


async def test_claim_lease_expiry_heartbeat_and_capabilities(
    sarah: Cli, agent_key: str, db: Database
) -> None:
    agent = {"TASKFLOW_TOKEN": agent_key}
    await sarah.ok("add", "Needs SQL", "--needs", "sql", "--priority", "critical")
    await sarah.ok("add", "Anyone")
    claimed = await sarah.json("claim", "--lease", "1", env=agent)
    assert claimed["id"] == 2  # the agent has no `sql` capability
    assert claimed["lease_expires_at"] is not None
    assert [t["id"] for t in await sarah.json("list", "--needs", "sql")] == [1]
    await asyncio.sleep(1.3)
    mark = await last_audit_id(db)
    err = await sarah.refused("heartbeat", "2")  # not sarah's lease
    assert "not in progress with you" in err
    again = await sarah.json("claim")  # sarah now takes the released task
    assert again["id"] == 2 and again["assignee"] == "@sarah"
    rows = await audit_rows(db, mark)
    assert [r["action"] for r in rows] == ["lease_expired", "claimed"]
    assert rows[0]["actor_handle"] == "@claude-code"
    beat = await sarah.ok("heartbeat", "2", "--lease", "600")
    assert "#2 Anyone is yours until" in beat.stdout


async def test_claim_skips_blocked_tasks_and_held_subtrees(sarah: Cli, agent_key: str) -> None:
    agent = {"TASKFLOW_TOKEN": agent_key}
    await sarah.ok("add", "Feature", "--priority", "critical")  # 1
    await sarah.ok("add", "Blocker", "--priority", "low")  # 2
    await sarah.ok("add", "Waiting", "--priority", "critical")  # 3
    await sarah.ok("depend", "3", "--on", "2")
    assert (await sarah.json("claim", env=agent))["id"] == 1
    part = await sarah.json("subtask", "1", "Part", env=agent)
    assert part["assignee"] == "@claude-code"  # the holder's own
    await sarah.ok("add", "Stray", "--parent", "1", "--priority", "critical")
    assert (await sarah.json("claim"))["id"] == 2  # not 3 (blocked), not the stray (held)
    await sarah.ok("complete", "2")
    assert (await sarah.json("claim"))["id"] == 3

"""API key scopes from the CLI: chosen with `agent register` / `agent new-key`, shown by `agent
keys`, enforced for a CLI acting with the key (TASKFLOW_TOKEN); the agents one manages, listed
and revoked down the chain; the quota's refusal in one red line."""

from __future__ import annotations

from taskflow.core.db import Database
from tests.cli.conftest import Cli, snapshot


async def test_a_scoped_key_is_made_listed_and_enforced(
    sarah: Cli, agent_key: str, db: Database
) -> None:
    await sarah.ok("project", "add", "web", "Web")
    await sarah.ok("member", "add", "@claude-code", "--project", "web")
    issued = await sarah.json(
        "agent", "new-key", "@claude-code", "--name", "ro", "--read-only", "--project", "web"
    )
    assert (issued["key"]["read_only"], issued["key"]["projects"]) == (True, ["web"])
    table = (await sarah.ok("agent", "keys", "@claude-code")).stdout
    assert "read-only; projects: web" in table and "read-write" in table
    rotated = await sarah.json("agent", "rotate", "@claude-code", issued["key"]["id"])
    assert (rotated["key"]["read_only"], rotated["key"]["projects"]) == (True, ["web"])  # kept
    issued = rotated

    as_key = {"TASKFLOW_TOKEN": issued["api_key"]}
    await sarah.ok("add", "Visible", "--project", "web")
    before = await snapshot(db)
    err = await sarah.refused("add", "Nope", "--project", "web", env=as_key)
    assert "read-only" in err and "write scope" in err
    err = await sarah.refused("list", "--project", "default", env=as_key)
    assert "not found" in err
    assert await snapshot(db) == before
    listed = await sarah.json("list", env=as_key)
    assert [t["title"] for t in listed] == ["Visible"]


async def test_the_registrant_lists_and_revokes_down_the_chain(sarah: Cli, db: Database) -> None:
    made = await sarah.json("agent", "register", "@lead", "--name", "Lead", "--manage-agents")
    assert made["key"]["manage_agents"] is True
    lead = {"TASKFLOW_TOKEN": made["api_key"]}
    sub = await sarah.json("agent", "register", "@sub", "--name", "Sub", env=lead)
    spare = await sarah.json("agent", "new-key", "@lead", "--name", "spare", env=lead)
    err = await sarah.refused("agent", "new-key", "@sub", env={"TASKFLOW_TOKEN": sub["api_key"]})
    assert "manage_agents" in err  # a key made without it cannot mint more

    managed = await sarah.json("worker", "list", "--managed")
    assert [w["handle"] for w in managed] == ["@lead", "@sub"]
    await sarah.ok("agent", "revoke", "@lead", spare["key"]["id"])
    assert "invalid API key" in await sarah.refused(
        "whoami", env={"TASKFLOW_TOKEN": spare["api_key"]}
    )
    await sarah.ok("agent", "deactivate", "@sub")  # registered by @lead, managed by @sarah


async def test_over_the_agent_quota_is_one_red_line(sarah: Cli, db: Database) -> None:
    quota = {"TASKFLOW_MAX_AGENTS_PER_WORKER": "1"}
    await sarah.ok("agent", "register", "@one", "--name", "One", env=quota)
    before = await snapshot(db)
    err = await sarah.refused("agent", "register", "@two", "--name", "Two", env=quota)
    assert "TASKFLOW_MAX_AGENTS_PER_WORKER=1" in err
    assert await snapshot(db) == before

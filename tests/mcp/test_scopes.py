"""API key scopes on MCP: a read-only key is offered only read-only tools (in process, over
Streamable HTTP and over stdio) and refused the others naming the scope; a project-limited key
sees other projects as not found; separation of duties through one's own agent."""

from __future__ import annotations

from pathlib import Path

import httpx
from mcp import Client, StdioServerParameters

from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.domain import Role, Via
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import AddMember
from taskflow.core.services import projects, workers
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team, audit_tail, ok, refusal, refused_unchanged
from tests.mcp.live import serving
from tests.mcp.test_http import ACCEPT, JSONRPC_LIST, app_factory
from tests.mcp.test_stdio import SCRIPT, stdio_env

READ_ONLY_TOOLS = {op.mcp for op in REGISTRY.values() if op.mcp and op.read_only}


async def keyed_user(runtime: Runtime, key: str) -> McpUser:
    """As `taskflow-mcp` over stdio builds its server for TASKFLOW_API_KEY."""
    actor = await runtime.auth.authenticate(key, Via.MCP)
    return McpUser(build_mcp(runtime, actor=actor, api_key=key, toolset_names="all"))


async def test_a_read_only_key_is_offered_and_allowed_only_read_only_tools(
    runtime: Runtime, db: Database, team: Team
) -> None:
    issued = await workers.create_api_key(db, team.sarah, "@claude-code", "ro", read_only=True)
    reader = await keyed_user(runtime, issued.api_key)

    listed = {t.name: t for t in (await reader.tools()).tools}
    assert set(listed) == READ_ONLY_TOOLS
    assert all(t.annotations and t.annotations.read_only_hint for t in listed.values())
    message = await refused_unchanged(db, reader, "create_task", title="No")
    assert "read-only" in message and "write scope" in message
    assert ok(await reader.call("whoami"))["handle"] == "@claude-code"
    full = await keyed_user(runtime, team.bot_key)  # the default key: every tool
    assert len((await full.tools()).tools) > len(listed)


async def test_a_project_limited_key_sees_other_projects_as_not_found(
    runtime: Runtime, db: Database, team: Team
) -> None:
    member = AddMember(handle="@claude-code", role=Role.MEMBER)
    await projects.add_member(db, team.sarah, "web", member)  # a member of both
    issued = await workers.create_api_key(
        db, team.sarah, "@claude-code", "def", projects=["default"]
    )
    limited = await keyed_user(runtime, issued.api_key)
    assert [p["slug"] for p in ok(await limited.call("list_projects"))["items"]] == ["default"]
    assert "not found" in refusal(await limited.call("get_project", project="web"))
    ok(await limited.call("create_task", title="In default"))
    [entry] = await audit_tail(db)
    assert entry["actor_key"] == issued.key.display_prefix
    assert "not found" in await refused_unchanged(
        db, limited, "create_task", title="Elsewhere", project="web"
    )


async def test_the_registrant_cannot_approve_through_its_agent(
    runtime: Runtime, db: Database, team: Team
) -> None:
    sarah = McpUser(build_mcp(runtime, actor=team.sarah, toolset_names="all"))
    agent = await keyed_user(runtime, team.bot_key)
    ok(await sarah.call("update_project", project="default", approval_policy="review_required"))
    task = ok(await sarah.call("create_task", title="Via my agent"))["task"]["id"]
    ok(await agent.call("start_task", task_id=task))
    ok(await agent.call("request_review", task_id=task))
    message = await refused_unchanged(db, sarah, "approve_task", task_id=task)
    assert "an agent you registered" in message


async def test_a_read_only_key_over_streamable_http_lists_only_read_only_tools(
    db: Database, db_url: str, team: Team
) -> None:
    issued = await workers.create_api_key(db, team.sarah, "@claude-code", "ro", read_only=True)
    async with (
        serving(app_factory(db, db_url)) as base,
        httpx.AsyncClient(base_url=base, headers=ACCEPT) as http,
    ):
        auth = {"Authorization": f"Bearer {issued.api_key}"}
        listed = await http.post("/mcp?toolsets=all", json=JSONRPC_LIST, headers=auth)
        refused = await http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "create_task", "arguments": {"title": "No"}},
            },
            headers={**auth, "X-Request-ID": "ro-1"},
        )
    assert listed.status_code == 200, listed.text
    names = {t["name"] for t in listed.json()["result"]["tools"]}
    assert names == READ_ONLY_TOOLS
    result = refused.json()["result"]
    assert result["isError"] and "write scope" in result["content"][0]["text"]
    assert result["_meta"]["taskflow/error"]["scope"] == "write"


async def test_a_read_only_key_over_stdio_lists_only_read_only_tools(
    db: Database, db_url: str, team: Team, tmp_path: Path
) -> None:
    issued = await workers.create_api_key(db, team.sarah, "@claude-code", "ro", read_only=True)
    server = StdioServerParameters(
        command=str(SCRIPT),
        env=stdio_env(db_url, tmp_path, TASKFLOW_API_KEY=issued.api_key),
        cwd=str(tmp_path),
    )
    async with Client(server) as client:
        listed = await client.list_tools()
        refused = await client.call_tool("update_task", {"task_id": 1, "title": "x"})
    assert {t.name for t in listed.tools} <= READ_ONLY_TOOLS
    assert "whoami" in {t.name for t in listed.tools}
    assert refused.is_error and "write scope" in refused.content[0].text

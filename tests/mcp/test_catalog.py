"""The tool catalog an agent sees: complete, annotated, typed, and small enough for its context."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from taskflow.core.declarations import REGISTRY
from taskflow.core.errors import ValidationFailed
from taskflow.core.runtime import Runtime
from taskflow.mcp_server import toolsets
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team, call, refusal

MAX_TOOLS_LIST_BYTES = 32_000  # the budget: under 32 KB (about 8k tokens)
# Every tool is generated from a declaration, in declaration order.
DECLARED = {name: op.mcp for name, op in REGISTRY.items() if op.mcp is not None}
BY_DEFAULT = [
    op.mcp for op in REGISTRY.values() if op.mcp is not None and op.toolset in toolsets.default()
]


async def listing(user: McpUser) -> list[dict[str, Any]]:
    listed = await user.tools()
    return [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in listed.tools]


@pytest.fixture
async def catalog(runtime: Runtime, team: Team) -> list[dict[str, Any]]:
    """Every tool (all toolsets), as a client that asks for all of them sees it."""
    return await listing(McpUser(build_mcp(runtime, actor=team.bot, toolset_names="all")))


@pytest.fixture
async def default_catalog(runtime: Runtime, team: Team) -> list[dict[str, Any]]:
    """What a client that names no toolset sees."""
    return await listing(McpUser(build_mcp(runtime, actor=team.bot)))


def wire_bytes(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps({"tools": tools}, separators=(",", ":")).encode())


async def test_tools_list_is_the_lean_set_in_order(
    catalog: list[dict[str, Any]], default_catalog: list[dict[str, Any]]
) -> None:
    assert [t["name"] for t in catalog] == list(DECLARED.values())
    assert [t["name"] for t in default_catalog] == BY_DEFAULT
    assert "create_project" not in BY_DEFAULT and "list_projects" in BY_DEFAULT


async def test_tools_list_fits_the_context_budget(default_catalog: list[dict[str, Any]]) -> None:
    size = wire_bytes(default_catalog)
    assert size < MAX_TOOLS_LIST_BYTES, f"tools/list is {size} bytes"


async def test_a_tool_outside_the_chosen_toolsets_says_how_to_get_it(
    runtime: Runtime, team: Team
) -> None:
    plain = McpUser(build_mcp(runtime, actor=team.sarah))
    message = refusal(await call(plain, "create_project", slug="x", name="X"))
    assert "admin toolset" in message and "toolsets=admin" in message
    with pytest.raises(ValidationFailed, match="unknown toolset nope: choose from admin, all"):
        toolsets.parse("core,nope")


async def test_every_tool_is_annotated_and_typed(catalog: list[dict[str, Any]]) -> None:
    for tool in catalog:
        hints = tool["annotations"]
        assert set(hints) == {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
        assert hints["openWorldHint"] is False, tool["name"]
        if hints["readOnlyHint"]:
            assert not hints["destructiveHint"] and hints["idempotentHint"], tool["name"]
        assert tool["outputSchema"]["type"] == "object", tool["name"]
        assert tool["inputSchema"]["type"] == "object", tool["name"]
        assert 20 < len(tool["description"]) < 300, tool["name"]


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {k for k, v in node.items() if k != "properties" or not isinstance(v, dict)}
        nested = [_keys(v) for k, v in node.items() if k != "properties"]
        props = [_keys(v) for v in node.get("properties", {}).values()]
        return own.union(*nested, *props)
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


async def test_schemas_are_compacted(catalog: list[dict[str, Any]]) -> None:
    for tool in catalog:
        assert "title" not in _keys(tool["inputSchema"]) | _keys(tool["outputSchema"]), tool["name"]
        assert "description" not in _keys(tool["outputSchema"]), tool["name"]
    create = next(t for t in catalog if t["name"] == "create_task")
    assert "title" in create["inputSchema"]["properties"]  # a *property* named title stays


async def test_mutating_tools_take_idempotency_key_and_version(
    catalog: list[dict[str, Any]],
) -> None:
    by_name = {t["name"]: t for t in catalog}
    for op in REGISTRY.values():
        tool = by_name[op.mcp or ""]
        props = tool["inputSchema"]["properties"]
        assert tool["annotations"]["readOnlyHint"] is op.read_only, op.name
        assert ("idempotency_key" in props) is op.mutating, op.name
        versioned = "expected_version" in op.command.model_fields
        assert ("expected_version" in props) is versioned, op.name


async def test_destructive_tools_are_marked(catalog: list[dict[str, Any]]) -> None:
    destructive = {t["name"] for t in catalog if t["annotations"]["destructiveHint"]}
    assert destructive == {op.mcp for op in REGISTRY.values() if op.destructive}
    assert {"delete_task", "delete_project", "revoke_api_key"} <= destructive


async def test_every_operation_is_reachable(catalog: list[dict[str, Any]]) -> None:
    """Principle 2: an agent can do everything. Every declared operation is a listed tool."""
    assert all(op.mcp for op in REGISTRY.values()), "an operation without an MCP tool"
    assert {t["name"] for t in catalog} == {op.mcp for op in REGISTRY.values()}


async def test_server_identity_resources_and_capabilities(runtime: Runtime, team: Team) -> None:
    async with Client(build_mcp(runtime, actor=team.bot), mode="legacy") as client:
        templates = await client.list_resource_templates()
        capabilities = client.server_capabilities
        server_info, instructions = client.server_info, client.instructions
    assert {t.uri_template for t in templates.resource_templates} == {
        "taskflow://tasks/{id}{?limit,cursor,depth}",
        "taskflow://projects/{slug}",
        "taskflow://projects/{slug}/audit",
    }
    assert capabilities.tools is not None and capabilities.resources is not None
    # Subscriptions need a session stream: served on stdio (`subscribe=True`), not here.
    assert not capabilities.resources.subscribe
    assert capabilities.logging is None  # not offered: see docs/mcp.md
    assert capabilities.prompts is None  # TaskFlow has none, so it does not advertise them
    assert server_info is not None and server_info.name == "taskflow"
    assert "claim_next_task" in (instructions or "")

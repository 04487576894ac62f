"""The tool catalog an agent sees: complete, annotated, typed, and small enough for its context."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from taskflow.core.operations import MUTATING, OPERATIONS
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.coverage import ACTIONS, COVERAGE
from taskflow.mcp_server.server import TOOL_ORDER, build_mcp
from tests.mcp.conftest import McpUser, Team

MAX_TOOLS_LIST_BYTES = 32_000  # the budget: under 32 KB (about 8k tokens)
# Tools whose change has no stored version to compare: they create, claim, or manage keys.
UNVERSIONED = {"create_task", "claim_next_task", "manage_agents"}


@pytest.fixture
async def catalog(bot: McpUser) -> list[dict[str, Any]]:
    listed = await bot.tools()
    return [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in listed.tools]


def wire_bytes(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps({"tools": tools}, separators=(",", ":")).encode())


async def test_tools_list_is_the_lean_set_in_order(catalog: list[dict[str, Any]]) -> None:
    assert [t["name"] for t in catalog] == list(TOOL_ORDER)
    assert len(catalog) <= 25


async def test_tools_list_fits_the_context_budget(catalog: list[dict[str, Any]]) -> None:
    size = wire_bytes(catalog)
    assert size < MAX_TOOLS_LIST_BYTES, f"tools/list is {size} bytes"


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
    writers = [t for t in catalog if not t["annotations"]["readOnlyHint"]]
    assert len(writers) == 16
    for tool in writers:
        props = tool["inputSchema"]["properties"]
        assert "idempotency_key" in props, tool["name"]
        assert ("expected_version" in props) == (tool["name"] not in UNVERSIONED), tool["name"]


async def test_destructive_tools_are_marked(catalog: list[dict[str, Any]]) -> None:
    destructive = {t["name"] for t in catalog if t["annotations"]["destructiveHint"]}
    assert destructive == {"manage_task", "manage_project", "manage_agents"}


async def test_every_operation_is_reachable(catalog: list[dict[str, Any]]) -> None:
    """Principle 2: an agent can do everything. Every core operation maps to a listed tool."""
    assert set(COVERAGE) == set(OPERATIONS)
    by_name = {t["name"]: t for t in catalog}
    for operation, tool in COVERAGE.items():
        assert tool in by_name, f"{operation} -> {tool}: no such tool"
        if operation in MUTATING:
            assert not by_name[tool]["annotations"]["readOnlyHint"], operation
    for operation, action in ACTIONS.items():
        actions = by_name[COVERAGE[operation]]["inputSchema"]["properties"]["action"]["enum"]
        assert action in actions, f"{operation}: {COVERAGE[operation]} has no action {action}"


async def test_server_identity_resources_and_capabilities(runtime: Runtime, team: Team) -> None:
    async with Client(build_mcp(runtime, actor=team.bot), mode="legacy") as client:
        templates = await client.list_resource_templates()
        capabilities = client.server_capabilities
        server_info, instructions = client.server_info, client.instructions
    assert {t.uri_template for t in templates.resource_templates} == {
        "taskflow://tasks/{id}",
        "taskflow://projects/{slug}/audit",
    }
    assert capabilities.tools is not None and capabilities.resources is not None
    assert capabilities.logging is None  # not offered: see docs/mcp.md
    assert server_info is not None and server_info.name == "taskflow"
    assert "claim_next_task" in (instructions or "")

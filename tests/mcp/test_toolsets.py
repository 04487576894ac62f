"""Each toolset's size in tools/list bytes, printed and held to its budget: `core` fits in about
2.5k tokens (10,000 bytes of compact JSON) with its output schemas, the default catalog under
32,000 bytes; docs/mcp.md lists the sizes this test prints (`pytest -s` shows them)."""

from __future__ import annotations

import json
from typing import Any

from taskflow.core.declarations import REGISTRY
from taskflow.core.runtime import Runtime
from taskflow.mcp_server import toolsets
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team

CORE_BUDGET = 10_000  # about 2.5k tokens
DEFAULT_BUDGET = 32_000


def wire_bytes(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps({"tools": tools}, separators=(",", ":")).encode())


async def listed(runtime: Runtime, team: Team, names: str | None) -> list[dict[str, Any]]:
    server = build_mcp(runtime, actor=team.bot, toolset_names=names)
    tools = (await McpUser(server).tools()).tools
    return [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in tools]


async def test_each_toolset_fits_and_core_is_the_everyday_few(runtime: Runtime, team: Team) -> None:
    sizes = {}
    for name in sorted(toolsets.known()):
        tools = await listed(runtime, team, name)
        sizes[name] = (len(tools), wire_bytes(tools))
        assert all(t.get("outputSchema") for t in tools), name  # output schemas stay
    default = await listed(runtime, team, None)
    print("\ntoolset sizes (tools, bytes of compact tools/list JSON):")
    for name, (count, size) in sizes.items():
        opt = " (opt-in)" if name in toolsets.OPT_IN else ""
        print(f"  {name}{opt}: {count} tools, {size:,} bytes")
    print(f"  default ({', '.join(sorted(toolsets.default()))}): {wire_bytes(default):,} bytes")

    assert sizes["core"][1] <= CORE_BUDGET, sizes["core"]
    assert wire_bytes(default) < DEFAULT_BUDGET
    core = {op.mcp for op in REGISTRY.values() if op.toolset == "core"}
    assert core == {"whoami", "create_task", "get_task", "list_tasks", "update_task"}

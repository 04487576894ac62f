"""Proves items 1, 2, 6 (in-process), 8: tools/list shape, structuredContent, isError,
resource templates, capabilities.  Run: uv run python scratch/mcp_proto/p1_inprocess.py"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client, MCPError

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from server_def import build_server  # noqa: E402


def dump(m):
    return m.model_dump(by_alias=True, mode="json", exclude_none=True)


async def run(mode: str) -> None:
    print(f"\n=============== mode={mode} ===============")
    mcp = build_server()
    async with Client(mcp, mode=mode) as client:
        print("protocol_version:", client.protocol_version)
        caps = dump(client.server_capabilities)
        print("capabilities:", json.dumps(caps))
        tools = await client.list_tools()
        for t in tools.tools:
            d = dump(t)
            print(f"--- tool {t.name}:", json.dumps(d)[:900])

        r = await client.call_tool("get_task", {"task_id": 1})
        print("get_task ok: is_error=", r.is_error, "structured=", r.structured_content,
              "content=", [c.text for c in r.content])

        r = await client.call_tool("get_task", {"task_id": 99})
        print("get_task missing: is_error=", r.is_error, "structured=", r.structured_content,
              "content=", [c.text for c in r.content])

        r = await client.call_tool("get_task", {"task_id": 0})
        print("get_task invalid arg: is_error=", r.is_error, "content=", r.content[0].text[:200])

        r = await client.call_tool("create_task", {"title": "flat one"})
        print("create_task (flat):", r.is_error, r.structured_content)
        r = await client.call_tool("create_task", {"title": ""})
        print("create_task (flat, invalid):", r.is_error, r.content[0].text[:160])
        r = await client.call_tool("create_task_nested", {"data": {"title": "nested", "status": "doing"}})
        print("create_task_nested:", r.is_error, r.structured_content)

        r = await client.call_tool("crash", {})
        print("crash:", r.is_error, [c.text for c in r.content])

        try:
            r = await client.call_tool("no_such_tool", {})
            print("unknown tool -> result:", r.is_error, [c.text for c in r.content])
        except MCPError as e:
            print("unknown tool -> MCPError:", e.code, e)

        r = await client.call_tool("whoami", {})
        print("whoami in-process:", r.structured_content)

        rl = await client.list_resources()
        print("resources:", [dump(x) for x in rl.resources])
        tl = await client.list_resource_templates()
        print("templates:", [dump(x) for x in tl.resource_templates])
        rr = await client.read_resource("taskflow://tasks/1")
        print("read taskflow://tasks/1:", [dump(c) for c in rr.contents])
        try:
            await client.read_resource("taskflow://tasks/999")
        except MCPError as e:
            print("read missing -> MCPError:", e.code, str(e), e.error.data if hasattr(e, "error") else None)
        try:
            await client.read_resource("taskflow://tasks/abc")
        except MCPError as e:
            print("read bad id -> MCPError:", e.code, str(e))

        try:
            await client.set_logging_level("debug")
            print("set_logging_level: OK")
        except MCPError as e:
            print("set_logging_level -> MCPError:", e.code, e)


async def main() -> None:
    for mode in ("auto", "legacy"):
        await run(mode)


anyio.run(main)

"""Proves item 5: stdio transport, via mcp.Client(StdioServerParameters(...)).
Run: uv run python scratch/mcp_proto/p3_stdio.py"""

from __future__ import annotations

import os
import sys

import anyio
from mcp import Client, StdioServerParameters

HERE = os.path.dirname(os.path.abspath(__file__))


async def main() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[os.path.join(HERE, "stdio_server.py")],
        env={**os.environ, "TASKFLOW_API_KEY": "agent-key-1"},
    )
    for mode in ("auto", "legacy"):
        async with Client(params, mode=mode) as client:
            print(f"[stdio mode={mode}] protocol:", client.protocol_version,
                  "server_info:", client.server_info.name if client.server_info else None)
            tl = await client.list_tools()
            print("  tools:", [t.name for t in tl.tools])
            r = await client.call_tool("get_task", {"task_id": 1})
            print("  get_task:", r.is_error, r.structured_content)
            r = await client.call_tool("whoami", {})
            print("  whoami (stdio -> no request/headers):", r.structured_content)


anyio.run(main)

"""One MCP tool call over stateless Streamable HTTP, as a raw JSON-RPC POST (no SDK client): for
tests that drive real servers from many tasks at once."""

from __future__ import annotations

from typing import Any

import httpx

ACCEPT = {"Accept": "application/json, text/event-stream"}


async def tool_call(
    http: httpx.AsyncClient, name: str, arguments: dict[str, Any], *, path: str = "/mcp"
) -> dict[str, Any]:
    """The `tools/call` result (`content`, `structuredContent`, `isError`); HTTP errors raise."""
    answer = await http.post(
        path,
        headers=ACCEPT,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        },
    )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()["result"]
    return result

"""Proves items 3, 4, 6 (HTTP client): runs http_app under a real uvicorn on a free port,
then exercises it with raw httpx and with mcp.Client over Streamable HTTP.
Run: uv run python scratch/mcp_proto/p2_http.py"""

from __future__ import annotations

import json
import socket
import sys

import anyio
import httpx
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from http_app import build_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(build_app(base), host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.05)

        async with httpx.AsyncClient(base_url=base) as h:
            r = await h.get("/health")
            print("GET /health:", r.status_code, r.json())
            r = await h.get("/api/v1/tasks")
            print("GET /api/v1/tasks:", r.status_code, r.json())

            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            r = await h.post("/mcp", json=body, headers=ACCEPT)
            print("POST /mcp no token:", r.status_code, "WWW-Authenticate:", r.headers.get("www-authenticate"))
            print("  body:", r.text)
            r = await h.post("/mcp", json=body, headers={**ACCEPT, "Authorization": "Bearer nope"})
            print("POST /mcp bad token:", r.status_code)
            r = await h.post("/mcp", json=body, headers={**ACCEPT, "Authorization": "Bearer noscope"})
            print("POST /mcp token w/o scope:", r.status_code, r.headers.get("www-authenticate"))

            r = await h.get("/.well-known/oauth-protected-resource/mcp")
            print("GET PRM:", r.status_code, r.json())

            auth = {**ACCEPT, "Authorization": "Bearer agent-key-1"}
            # stateless + legacy wire: no initialize needed, plain JSON body back (json_response=True)
            r = await h.post("/mcp", json=body, headers=auth)
            print("raw tools/list (legacy, no initialize):", r.status_code, r.headers.get("content-type"),
                  "bytes=", len(r.content))
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "get_task", "arguments": {"task_id": 99}}}
            r = await h.post("/mcp", json=call, headers=auth)
            print("raw tools/call error:", r.status_code, r.text)
            call["params"] = {"name": "get_task", "arguments": {"task_id": 1}}
            r = await h.post("/mcp", json=call, headers=auth)
            print("raw tools/call ok:", r.status_code, r.text)
            r = await h.post("/mcp", json=body, headers={**auth, "Host": "evil.example.com"})
            print("bad Host:", r.status_code, r.text)
            r = await h.post("/mcp", json=body, headers={**auth, "Origin": "https://evil.example.com"})
            print("bad Origin:", r.status_code, r.text)
            r = await h.post("/mcp", json=body, headers={**auth, "Origin": "https://taskflow.example.com"})
            print("allowed Origin:", r.status_code)
            r = await h.post("/mcp", json=body, headers={"Authorization": "Bearer agent-key-1",
                                                           "Content-Type": "application/json"})
            print("no Accept header:", r.status_code, r.text[:200])
            try:
                async with h.stream("GET", "/mcp", headers=auth, timeout=2) as r:
                    print("GET /mcp (stateless):", r.status_code, r.headers.get("content-type"))
                    async for chunk in r.aiter_text():
                        print("  GET chunk:", chunk[:100])
            except httpx.ReadTimeout:
                print("  GET /mcp: stream stays open with no events (ReadTimeout after 2s)")

        # mcp.Client over real Streamable HTTP, with bearer header via httpx2 client
        for mode in ("auto", "legacy"):
            async with httpx2.AsyncClient(
                headers={"Authorization": "Bearer agent-key-1", "X-Request-Id": f"req-{mode}"},
                timeout=httpx2.Timeout(30, read=300),
            ) as hc:
                async with Client(streamable_http_client(f"{base}/mcp", http_client=hc), mode=mode) as client:
                    print(f"\n[Client over HTTP mode={mode}] protocol:", client.protocol_version)
                    tl = await client.list_tools()
                    print("  tools:", [t.name for t in tl.tools])
                    r = await client.call_tool("whoami", {})
                    print("  whoami:", r.is_error, json.dumps(r.structured_content))
                    r = await client.call_tool("get_task", {"task_id": 42})
                    print("  get_task 42:", r.is_error, r.content[0].text)
                    rr = await client.read_resource("taskflow://tasks/1")
                    print("  resource:", rr.contents[0].text)

        # Without a token the Client fails at connect time (no OAuth provider configured)
        try:
            async with Client(f"{base}/mcp") as client:
                print("unexpected: connected without token")
        except BaseException as e:  # noqa: BLE001
            leaf = e
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            print("\nClient without token ->", type(e).__name__, "leaf:", type(leaf).__name__, str(leaf)[:200])

        server.should_exit = True


anyio.run(main)

"""`taskflow serve` and `taskflow mcp`: refusals in-process, the real servers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import Cli

TASKFLOW = Path(sys.executable).parent / "taskflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_refuses_without_auth_server(sarah: Cli) -> None:
    err = await sarah.refused("serve")
    assert "AUTH_SERVER_URL" in err and "--no-auth" in err
    err = await sarah.refused("serve", "--no-auth", "--host", "0.0.0.0", code=2)
    assert "127.0.0.1 only" in err


async def test_serve_no_auth_needs_a_local_user(cli: Cli) -> None:
    err = await cli.refused("serve", "--no-auth")
    assert "taskflow init" in err


async def test_serve_no_auth_serves_the_local_user(sarah: Cli) -> None:
    await sarah.ok("add", "Served task")
    port = free_port()
    proc = await serving(port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_healthy(client, proc)
            me = await client.get("/api/me")
            assert me.status_code == 200, me.text
            assert me.json()["handle"] == "@sarah"
            tasks = await client.get("/api/tasks")
            assert [t["title"] for t in tasks.json()["items"]] == ["Served task"]
            await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            await leave_mid_body(port)
            assert (await client.get("/health")).status_code == 200  # still serving
    finally:
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    log = output.decode()
    assert "127.0.0.1 only" in log
    # No access line per request (TASKFLOW_ACCESS_LOG is off), no MCP SDK line per /mcp request,
    # and a caller that hung up mid-body is no traceback.
    assert '"GET /api/me' not in log and "Processing request" not in log, log
    assert "Traceback" not in log and "ClientDisconnect" not in log, log


async def test_serve_with_workers_and_an_access_log(sarah: Cli) -> None:
    port = free_port()
    proc = await serving(port, "--workers", "2", env={"TASKFLOW_ACCESS_LOG": "true"})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_healthy(client, proc)
            for _ in range(4):
                assert (await client.get("/api/me")).json()["handle"] == "@sarah"
    finally:
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    log = output.decode()
    assert "Started parent process" in log, log  # uvicorn's supervisor of the 2 workers
    assert log.count("Started server process") == 2, log
    assert '"GET /api/me HTTP/1.1" 200' in log, log


async def test_a_bad_log_level_is_refused(sarah: Cli) -> None:
    err = await sarah.refused("serve", "--no-auth", code=2, env={"LOG_LEVEL": "LOUD"})
    assert "LOG_LEVEL" in err and "'WARNING'" in err, err


async def serving(port: int, *args: str, env: dict[str, str] | None = None) -> Any:
    """`taskflow serve --no-auth` on `port`, its output piped."""
    return await asyncio.create_subprocess_exec(
        str(TASKFLOW),
        "serve",
        "--no-auth",
        "--port",
        str(port),
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def leave_mid_body(port: int) -> None:
    """Clients that announce 1,000 bytes of JSON, send ten and hang up, on REST and on MCP."""
    for path in ("/api/projects/inbox/tasks", "/mcp"):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
            + b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            b'Content-Length: 1000\r\n\r\n{"title": '
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)


async def wait_healthy(client: httpx.AsyncClient, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.returncode is None, "the server exited"
        await asyncio.sleep(0.2)
    raise AssertionError("the server did not start within 60 s")


async def test_mcp_stdio_acts_as_the_local_user(sarah: Cli) -> None:
    mcp = pytest.importorskip("mcp")
    await sarah.ok("add", "Visible to the agent host")
    params = mcp.StdioServerParameters(command=str(TASKFLOW), args=["mcp"], env=dict(os.environ))
    async with mcp.Client(params) as client:
        tools = await client.list_tools()
        assert "whoami" in {t.name for t in tools.tools}
        me = await client.call_tool("whoami", {})
        assert not me.is_error and me.structured_content["handle"] == "@sarah"


async def test_mcp_stdio_with_an_agent_key(sarah: Cli, agent_key: str) -> None:
    mcp = pytest.importorskip("mcp")
    env = {**os.environ, "TASKFLOW_API_KEY": agent_key}
    params = mcp.StdioServerParameters(command=str(TASKFLOW), args=["mcp"], env=env)
    async with mcp.Client(params) as client:
        me = await client.call_tool("whoami", {})
        assert me.structured_content["handle"] == "@claude-code"

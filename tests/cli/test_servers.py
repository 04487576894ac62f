"""`taskflow serve` and `taskflow mcp`: refusals in-process, the real servers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

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
    proc = await asyncio.create_subprocess_exec(
        str(TASKFLOW),
        "serve",
        "--no-auth",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_healthy(client, proc)
            me = await client.get("/api/me")
            assert me.status_code == 200, me.text
            assert me.json()["handle"] == "@sarah"
            tasks = await client.get("/api/tasks")
            assert [t["title"] for t in tasks.json()["items"]] == ["Served task"]
    finally:
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert "127.0.0.1 only" in output.decode()


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

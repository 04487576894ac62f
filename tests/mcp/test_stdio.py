"""`taskflow-mcp` over stdio, as Claude Desktop or Claude Code starts it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from taskflow.core.db import Database
from tests.mcp.conftest import Team, assert_audited, audit_tail

SCRIPT = Path(sys.executable).parent / "taskflow-mcp"


def stdio_env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing of the test runner's settings leaks into the server."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TASKFLOW_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": db_url,
        **extra,
    }


async def test_agent_over_stdio_with_api_key(
    db: Database, db_url: str, team: Team, tmp_path: Path
) -> None:
    server = StdioServerParameters(
        command=str(SCRIPT),
        env=stdio_env(db_url, tmp_path, TASKFLOW_API_KEY=team.bot_key),
        cwd=str(tmp_path),
    )
    async with Client(server) as client:
        me = await client.call_tool("whoami", {})
        made = await client.call_tool("create_task", {"title": "From stdio"})
        refused = await client.call_tool("update_progress", {"task_id": 999, "percent": 5})
    assert me.structured_content["handle"] == "@claude-code"
    assert made.structured_content["task"]["title"] == "From stdio"
    assert refused.is_error and "not found" in refused.content[0].text
    [entry] = await audit_tail(db)
    assert_audited(entry, "created", "@claude-code")


async def test_local_user_over_stdio(db: Database, db_url: str, team: Team, tmp_path: Path) -> None:
    server = StdioServerParameters(
        command=str(SCRIPT),
        args=["--as", "@sarah"],
        env=stdio_env(db_url, tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(server, mode="legacy") as client:
        me = await client.call_tool("whoami", {})
    assert me.structured_content["handle"] == "@sarah"


async def test_startup_refusals_are_one_line_on_stderr(db_url: str, tmp_path: Path) -> None:
    cases = [
        ([], {}, "no identity: set TASKFLOW_API_KEY"),
        ([], {"TASKFLOW_API_KEY": "tf_not_a_real_key"}, "invalid API key"),
        (["--as", "@nobody"], {}, "local user @nobody does not exist"),
        (["--as", "@sarah"], {"AUTH_SERVER_URL": "http://127.0.0.1:1"}, "--as works only in local"),
    ]

    async def start(args: list[str], extra: dict[str, str]) -> tuple[int | None, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            *args,
            env=stdio_env(db_url, tmp_path, **extra),
            cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, out.decode(), err.decode()

    outcomes = await asyncio.gather(*(start(args, extra) for args, extra, _ in cases))
    for (args, _, expected), (code, stdout, stderr) in zip(cases, outcomes, strict=True):
        assert code == 1, (args, stderr)
        assert stdout == ""  # stdout is the protocol channel: never polluted
        assert stderr.startswith("taskflow-mcp: ") and expected in stderr, stderr
        assert "Traceback" not in stderr

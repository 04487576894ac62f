"""`taskflow-mcp` over stdio, as Claude Desktop or Claude Code starts it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from taskflow.core.db import Database
from taskflow.core.errors import Unauthenticated
from taskflow.core.services import workers
from taskflow.mcp_server.identity import KEY_RECHECK_SECONDS
from taskflow.mcp_server.stdio import startup_actor
from tests.core.conftest import scalar
from tests.mcp.conftest import Team, assert_audited, audit_tail, settings_for
from tests.mcp.live import runtime_for

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


async def test_a_revoked_key_ends_the_stdio_session(
    db: Database, db_url: str, team: Team, tmp_path: Path
) -> None:
    """The identity is not fixed for the life of the process: the key is checked again."""
    server = StdioServerParameters(
        command=str(SCRIPT),
        env=stdio_env(db_url, tmp_path, TASKFLOW_API_KEY=team.bot_key),
        cwd=str(tmp_path),
    )
    [key] = await workers.list_api_keys(db, team.sarah, "@claude-code")
    async with Client(server) as client:
        before = await client.call_tool("whoami", {})
        await workers.revoke_api_key(db, team.sarah, "@claude-code", key.id)
        await asyncio.sleep(KEY_RECHECK_SECONDS + 0.2)
        after = await client.call_tool("create_task", {"title": "after revocation"})
    assert before.structured_content["handle"] == "@claude-code"
    assert after.is_error and "invalid API key" in after.content[0].text
    assert await scalar(db, "SELECT count(*) FROM tasks WHERE title = 'after revocation'") == 0


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


@pytest.mark.parametrize(
    ("key", "handle", "auth_server", "expected"),
    [
        (None, None, None, "no identity: set TASKFLOW_API_KEY"),
        ("tf_not_a_real_key", None, None, "invalid API key"),
        ("tf_x", "@sarah", None, "not both"),
        (None, "@nobody", None, "local user @nobody does not exist"),
        (None, "@sarah", "http://127.0.0.1:1", "--as works only in local mode"),
    ],
)
async def test_startup_identity_refusals(
    db: Database,
    db_url: str,
    team: Team,
    key: str | None,
    handle: str | None,
    auth_server: str | None,
    expected: str,
) -> None:
    runtime = runtime_for(db, settings_for(db_url, auth_server_url=auth_server))
    with pytest.raises(Unauthenticated, match=re.escape(expected)):
        await startup_actor(runtime, key, handle)
    if runtime.auth.verifier is not None:
        await runtime.auth.verifier.jwks.aclose()


def test_a_startup_refusal_is_one_line_on_stderr(db_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT)],
        env=stdio_env(db_url, tmp_path),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # stdout is the protocol channel: never polluted
    assert done.stderr.startswith("taskflow-mcp: no identity: set TASKFLOW_API_KEY")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


async def test_stdio_is_rate_limited_per_worker(
    db: Database, db_url: str, team: Team, tmp_path: Path
) -> None:
    """The stdio server limits its agent like the HTTP server does (decision 67)."""
    limits = {
        "RATE_LIMIT_WRITES_PER_MINUTE": "60",
        "RATE_LIMIT_BURST_SECONDS": "2",  # two writes at once, then one a second
    }
    server = StdioServerParameters(
        command=str(SCRIPT),
        env=stdio_env(db_url, tmp_path, TASKFLOW_API_KEY=team.bot_key, **limits),
        cwd=str(tmp_path),
    )
    async with Client(server) as client:
        made = [await client.call_tool("create_task", {"title": f"t{n}"}) for n in range(2)]
        refused = await client.call_tool("create_task", {"title": "one too many"})
        read = await client.call_tool("list_tasks", {})
    assert not any(r.is_error for r in made)
    assert refused.is_error and "retry in" in refused.content[0].text
    assert refused.meta["taskflow/error"]["retry_after"] >= 1  # type: ignore[index]
    assert not read.is_error  # reads are counted apart
    assert await scalar(db, "SELECT count(*) FROM tasks WHERE title = 'one too many'") == 0

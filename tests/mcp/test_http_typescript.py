"""The official MCP TypeScript SDK client against TaskFlow over real HTTP: an agent (API key)
does the work, a human (a real Better Auth JWT) approves it, and the audit trail shows both."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from taskflow.core.db import Database
from taskflow.core.domain import Via
from taskflow.core.schemas import AddMember
from taskflow.core.services import projects
from tests.better_auth import (
    NODE_DIR,
    BetterAuthServer,
    ensure_node_modules,
    node_env,
    node_executable,
)
from tests.mcp.conftest import Team, settings_for
from tests.mcp.live import mcp_test_app, runtime_for, serving

SCENARIO = NODE_DIR / "mcp_client_scenario.mjs"


async def run_node(script: str, *args: str, env: dict[str, str], limit: float = 90) -> str:
    """Run a Node script without blocking the loop the server under test runs in."""
    process = await asyncio.create_subprocess_exec(
        str(node_executable()),
        script,
        *args,
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode == 0, f"{script} failed:\n{stderr.decode()[-4000:]}"
    return stdout.decode()


async def test_agent_works_human_approves_over_http(
    db: Database, db_url: str, team: Team, better_auth: BetterAuthServer
) -> None:
    ensure_node_modules()
    session = better_auth.sign_up("rita@example.com", "password-rita-1", "Rita Reviewer")
    jwt = better_auth.get_jwt(session)
    runtimes: list[Any] = []

    def build(base: str):  # type: ignore[no-untyped-def]
        config = settings_for(
            db_url, taskflow_public_url=base, auth_server_url=better_auth.base_url
        )
        runtimes.append(runtime_for(db, config))
        return mcp_test_app(runtimes[-1])

    try:
        async with serving(build) as base:
            # Rita's first sign-in provisions her; the owner then adds her (as a plain member).
            rita = await runtimes[0].auth.authenticate(jwt, Via.MCP)
            await projects.add_member(db, team.sarah, "default", AddMember(handle=rita.handle))
            env = {**node_env(), "AGENT_KEY": team.bot_key, "HUMAN_JWT": jwt}
            out = json.loads(await run_node(str(SCENARIO), f"{base}/mcp?toolsets=all", env=env))
    finally:
        for runtime in runtimes:
            await runtime.auth.verifier.jwks.aclose()

    assert out["anonymous"]["status"] == 401
    assert "resource_metadata=" in out["anonymous"]["wwwAuthenticate"]
    assert {"create_task", "approve_task", "claim_next_task", "get_worker"} <= set(out["tools"])
    assert out["annotated"]
    assert out["agent"] == "@claude-code"
    assert out["human"] == rita.handle == "@rita"
    assert len(out["subtaskIds"]) == 2
    assert out["started"]["status"] == "in_progress"
    assert out["progressed"]["progress_percent"] == 80
    assert out["review"]["status"] == "review"
    assert out["selfApproval"]["isError"]
    assert "your own work" in out["selfApproval"]["text"]
    assert out["approved"]["status"] == "completed"

    trail = out["audit"]  # newest first
    by_action = {e["action"]: e for e in trail}
    assert [e["action"] for e in trail[:5]] == [
        "approved",
        "review_requested",
        "progressed",
        "started",
        "subtask_added",
    ]
    assert by_action["approved"] == {
        "action": "approved",
        "actor": "@rita",
        "type": "human",
        "via": "mcp",
    }
    for action in ("created", "started", "progressed", "review_requested"):
        assert by_action[action] == {
            "action": action,
            "actor": "@claude-code",
            "type": "agent",
            "via": "mcp",
        }

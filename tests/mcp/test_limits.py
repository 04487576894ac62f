"""MCP limits: a worker over its rate gets an isError result saying when to retry; too-deep
arguments and oversized lists are refused in the tool's words; one audit verification at a
time."""

from __future__ import annotations

import asyncio

import pytest

from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.handlers import audit as audit_ops
from taskflow.core.limits import RateLimiter
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.errors import META_KEY
from taskflow.mcp_server.operations import tool_for
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team, audit_count, ok, refusal, settings_for


@pytest.fixture
async def limited(db: Database, db_url: str) -> Runtime:
    settings = settings_for(
        db_url,
        rate_limit_writes_per_minute=60,
        rate_limit_reads_per_minute=60,
        rate_limit_burst_seconds=3,
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        auth=Authenticator(db, None),
        limiter=RateLimiter.from_settings(settings, db),
    )
    yield runtime
    await runtime.close()


def as_(runtime: Runtime, actor) -> McpUser:
    return McpUser(build_mcp(runtime, actor=actor, log_level="WARNING", toolset_names="all"))


async def test_over_the_rate_a_tool_call_is_an_error_saying_when_to_retry(
    limited: Runtime, team: Team, db: Database
) -> None:
    bot = as_(limited, team.bot)
    for n in range(3):
        ok(await bot.call("create_task", title=f"t{n}"))
    before = await audit_count(db)
    result = await bot.call("create_task", title="one too many")
    message = refusal(result)
    assert "60 writes per minute" in message and "retry in" in message
    meta = result.meta[META_KEY]  # type: ignore[index]
    assert meta["code"] == "rate-limited" and meta["status"] == 429
    assert meta["retry_after"] >= 1
    assert await audit_count(db) == before  # nothing written
    ok(await bot.call("list_tasks"))  # reads are counted apart
    ok(await as_(limited, team.ann).call("create_task", title="ann is not limited by the bot"))
    await asyncio.sleep(meta["retry_after"])
    ok(await bot.call("create_task", title="later"))


async def test_too_deep_arguments_are_refused(limited: Runtime, team: Team, db: Database) -> None:
    deep: object = []
    for _ in range(40):
        deep = [deep]
    before = await audit_count(db)
    message = refusal(await as_(limited, team.bot).call("create_task", title="x", tags=deep))
    assert "nested more than 32 levels" in message
    assert await audit_count(db) == before


async def test_list_bounds_are_in_the_tool_schemas(limited: Runtime, team: Team) -> None:
    schema = tool_for(REGISTRY["create_task"]).tool.input_schema
    assert schema["properties"]["tags"]["maxItems"] == 50
    assert schema["properties"]["subtasks"]["maxItems"] == 200
    listing = tool_for(REGISTRY["list_tasks"]).tool.input_schema
    assert listing["properties"]["tags"]["maxItems"] == 50
    message = refusal(
        await as_(limited, team.bot).call("list_tasks", tags=[f"t{i}" for i in range(51)])
    )
    assert "tags" in message


async def test_one_audit_verification_at_a_time(limited: Runtime, team: Team) -> None:
    bot = as_(limited, team.bot)
    audit_ops._VERIFYING.add(-1)
    try:
        result = await bot.call("verify_audit")
        assert "another audit verification is running" in refusal(result)
        assert "retry in 5 s" in refusal(result)
        assert result.meta[META_KEY]["retry_after"] == 5  # type: ignore[index]
    finally:
        audit_ops._VERIFYING.discard(-1)
    assert ok(await bot.call("verify_audit"))["ok"] is True

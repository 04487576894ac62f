"""Fixtures for the MCP suite: a runtime over the test database, a small team, and in-process
MCP clients (the SDK's own `Client`, no transport) acting as any member of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server import MCPServer
from mcp.types import CallToolResult, ListToolsResult
from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import Role, Via, WorkerType
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import AddMember, RegisterAgent
from taskflow.core.services import projects, workers
from taskflow.mcp_server.server import build_mcp
from tests.conftest import make_human
from tests.snapshots import snapshot


@dataclass
class Team:
    sarah: Actor  # human, owner of `default` and `web`
    ann: Actor  # human, member of `default`
    bot: Actor  # agent @claude-code, member of `default`
    bot_key: str


def settings_for(db_url: str, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=db_url, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def runtime(db: Database, db_url: str) -> Runtime:
    """A runtime over the test's database, in local mode (no auth server)."""
    return Runtime(settings=settings_for(db_url), db=db, auth=Authenticator(db, None))


async def register_agent(
    db: Database, by: Actor, handle: str, *, project: str = "default"
) -> tuple[Actor, str]:
    issued = await workers.register_agent(db, by, RegisterAgent(handle=handle, name=handle[1:]))
    await projects.add_member(db, by, project, AddMember(handle=handle, role=Role.MEMBER))
    agent = Actor(worker_id=issued.worker.id, handle=handle, type=WorkerType.AGENT, via=Via.CORE)
    return agent, issued.api_key


@pytest.fixture
async def team(db: Database, owner: Actor) -> Team:
    ann = await make_human(db, "@ann", "Ann Lee")
    await projects.add_member(db, owner, "default", AddMember(handle="@ann", role=Role.MEMBER))
    bot, key = await register_agent(db, owner, "@claude-code")
    return Team(sarah=owner, ann=ann, bot=bot, bot_key=key)


class McpUser:
    """An in-process MCP client acting as one actor.

    Each call opens its own `Client` session: a session's task group must be entered and left
    in one task, which a pytest fixture's setup and teardown are not.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        async with Client(self.server) as client:
            return await client.call_tool(tool, arguments)

    async def tools(self) -> ListToolsResult:
        async with Client(self.server, mode="legacy") as client:
            return await client.list_tools()

    async def read(self, uri: str) -> str:
        """The resource's text; a refusal raises `MCPError` (outside the session's task group,
        which would wrap it in an ExceptionGroup)."""
        failure: MCPError | None = None
        async with Client(self.server) as client:
            try:
                result = await client.read_resource(uri)
            except MCPError as exc:
                failure = exc
        if failure is not None:
            raise failure
        return result.contents[0].text  # type: ignore[union-attr]


@pytest.fixture
def user(runtime: Runtime) -> Callable[[Actor], McpUser]:
    """`user(actor)`: an MCP client whose calls act as `actor`, offered every toolset (the
    catalog tests check what a client sees by default)."""
    return lambda actor: McpUser(
        build_mcp(runtime, actor=actor, log_level="WARNING", toolset_names="all")
    )


@pytest.fixture
def bot(team: Team, user: Callable[[Actor], McpUser]) -> McpUser:
    return user(team.bot)


@pytest.fixture
def sarah(team: Team, user: Callable[[Actor], McpUser]) -> McpUser:
    return user(team.sarah)


@pytest.fixture
def ann(team: Team, user: Callable[[Actor], McpUser]) -> McpUser:
    return user(team.ann)


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a successful call (fails the test with the error text)."""
    assert not result.is_error, result.content[0].text if result.content else result
    assert result.structured_content is not None
    return result.structured_content


def refusal(result: CallToolResult) -> str:
    """The message of a refused call; a refusal never carries a traceback."""
    assert result.is_error, f"expected a refusal, got {result.structured_content}"
    message = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in message
    return message


async def call(client: McpUser, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call(tool, **arguments)


async def audit_tail(db: Database, n: int = 1) -> list[dict[str, Any]]:
    """The newest `n` audit entries, newest first."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_handle, actor_type, via, entity_type, entity_id, task_id, "
                "details, request_id, client_request_id, actor_key FROM audit_log "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"n": n},
        )
        return [dict(r._mapping) for r in rows]


async def audit_count(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM audit_log")) or 0)


def assert_audited(entry: dict[str, Any], action: str, actor: str) -> None:
    """Every change through MCP is on record as the caller, via mcp, with a request id."""
    assert (entry["action"], entry["actor_handle"], entry["via"]) == (action, actor, "mcp"), entry
    assert entry["request_id"]


async def refused_unchanged(db: Database, client: McpUser, tool: str, **arguments: Any) -> str:
    """Call a tool that must refuse; prove it changed nothing; return its message."""
    before = await snapshot(db)
    message = refusal(await call(client, tool, **arguments))
    assert await snapshot(db) == before, f"refused {tool} changed the database"
    return message

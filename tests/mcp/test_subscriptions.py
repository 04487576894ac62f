"""Resource subscriptions over stdio: a real `taskflow-mcp` subprocess and the SDK's client.

The changes come from another MCP client (in-process, acting as another member), so the
notification crosses processes through the audit log's feed, as it does in production.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ResourceUpdatedNotification

from taskflow.core.db import Database
from taskflow.core.runtime import Runtime
from taskflow.core.services import workers
from taskflow.server import create_server_app
from tests.mcp.conftest import McpUser, Team, ok, settings_for
from tests.mcp.live import runtime_for, serving
from tests.mcp.test_stdio import SCRIPT, stdio_env

WITHIN = 2.0  # the brief: a subscriber hears of a change within ~2 s
QUIET = 1.0  # how long "no notification" is waited for


class Inbox:
    """The `notifications/resources/updated` a client received, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self.arrived.set()
        await anyio.lowlevel.checkpoint()

    async def wait_for(self, uri: str) -> float:
        """Seconds until `uri` was notified (fails after `WITHIN`)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while uri not in self.uris:
            remaining = WITHIN - (loop.time() - began)
            assert remaining > 0, f"no notification for {uri} within {WITHIN}s: {self.uris}"
            self.arrived.clear()
            if uri in self.uris:
                break
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                continue
        return loop.time() - began

    def clear(self) -> None:
        self.uris.clear()


def stdio_server(db_url: str, tmp_path: Path, key: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(SCRIPT), env=stdio_env(db_url, tmp_path, TASKFLOW_API_KEY=key), cwd=tmp_path
    )


async def refused(client: Client, uri: str) -> MCPError:
    try:
        await client.subscribe_resource(uri)
    except MCPError as exc:
        return exc
    raise AssertionError(f"subscribing to {uri} was accepted")


@pytest.fixture(autouse=True)
def _legacy_subscribe_is_fine() -> None:
    # `resources/subscribe` is the handshake-era API (the one hosts speak today).
    warnings.filterwarnings("ignore", message="resources/(un)?subscribe is removed")


async def test_subscribe_notify_unsubscribe_over_stdio(
    db: Database, db_url: str, team: Team, tmp_path: Path, sarah: McpUser
) -> None:
    mine = ok(await sarah.call("create_task", title="watched"))["task"]["id"]
    other = ok(await sarah.call("create_task", title="not watched"))["task"]["id"]
    hidden = ok(await sarah.call("create_task", title="in web", project="web"))["task"]["id"]
    early = ok(await sarah.call("create_task", title="before", parent_id=mine))["task"]["id"]
    ok(await sarah.call("create_task", title="under it", parent_id=early))
    task_uri = f"taskflow://tasks/{mine}"
    inbox = Inbox()
    async with Client(
        stdio_server(db_url, tmp_path, team.bot_key), mode="legacy", message_handler=inbox
    ) as bot:
        caps = bot.server_capabilities.resources
        assert caps is not None and caps.subscribe is True

        # A task or project the caller cannot see is refused as a read is: "not found".
        for uri in (f"taskflow://tasks/{hidden}", "taskflow://projects/web", "taskflow://tasks/9"):
            assert (await refused(bot, uri)).error.code == -32602, uri
        assert "cannot subscribe" in (await refused(bot, "taskflow://nothing")).error.message

        await bot.subscribe_resource(task_uri)
        ok(await sarah.call("update_task", task_id=other, title="still not watched"))
        ok(await sarah.call("update_task", task_id=hidden, title="invisible to the bot"))
        began = asyncio.get_running_loop().time()
        ok(await sarah.call("update_task", task_id=mine, title="watched, changed"))
        await inbox.wait_for(task_uri)
        took = asyncio.get_running_loop().time() - began  # the change, its commit, the feed
        assert took < WITHIN
        assert set(inbox.uris) == {task_uri}  # nothing about the others

        # The subtree is part of the task resource: a subtask's change notifies it too.
        inbox.clear()
        child = ok(await sarah.call("create_task", title="c", parent_id=mine))["task"]["id"]
        await inbox.wait_for(task_uri)
        grandchild = ok(await sarah.call("create_task", title="g", parent_id=child))["task"]["id"]
        await asyncio.sleep(0.3)
        inbox.clear()
        ok(await sarah.call("update_task", task_id=grandchild, title="g2"))
        await inbox.wait_for(task_uri)
        # Deleting part of the subtree changes the task too: the rows are gone by the time the
        # entries are read, and these two were never seen before (made before subscribing).
        await asyncio.sleep(0.3)
        inbox.clear()
        ok(await sarah.call("delete_task", task_id=early))
        await inbox.wait_for(task_uri)

        # A burst of changes is coalesced (at most one per URI per ~100 ms).
        inbox.clear()
        await asyncio.gather(
            *(sarah.call("update_task", task_id=mine, title=f"burst {n}") for n in range(6))
        )
        await inbox.wait_for(task_uri)
        await asyncio.sleep(0.5)
        assert 1 <= inbox.uris.count(task_uri) < 6

        # A project subscription hears of any change in the project.
        project_uri = "taskflow://projects/default"
        await bot.subscribe_resource(project_uri)
        inbox.clear()
        ok(await sarah.call("create_task", title="new in default"))
        await inbox.wait_for(project_uri)
        assert task_uri not in inbox.uris

        # Unsubscribed: no more notifications for that URI.
        await bot.unsubscribe_resource(task_uri)
        await bot.unsubscribe_resource(project_uri)
        inbox.clear()
        ok(await sarah.call("update_task", task_id=mine, title="after unsubscribe"))
        await asyncio.sleep(QUIET)
        assert inbox.uris == []
        assert not (await bot.call_tool("whoami", {})).is_error  # the session is still fine


async def next_event(sub: Any) -> str:
    event = await asyncio.wait_for(anext(aiter(sub)), WITHIN)
    return str(event.uri)


async def test_listen_over_stateless_http(
    db: Database, db_url: str, team: Team, sarah: McpUser
) -> None:
    """2026-07-28 `subscriptions/listen`: the POST's response is the stream, so it works on the
    stateless transport, on any replica; the handshake-era `resources/subscribe` is not offered
    there (no session to notify on) and the capabilities say so."""
    mine = ok(await sarah.call("create_task", title="watched"))["task"]["id"]
    hidden = ok(await sarah.call("create_task", title="in web", project="web"))["task"]["id"]
    uri = f"taskflow://tasks/{mine}"
    headers = {"Authorization": f"Bearer {team.bot_key}"}
    runtimes: list[Runtime] = []

    def build(base: str):  # type: ignore[no-untyped-def]
        runtimes.append(runtime_for(db, settings_for(db_url, taskflow_public_url=base)))
        return create_server_app(runtimes[-1])  # the product's app: REST, its middleware, MCP

    async with (
        serving(build) as base,
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
    ):
        async with Client(
            streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy"
        ) as legacy:
            legacy_caps = legacy.server_capabilities.resources
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            assert client.protocol_version == "2026-07-28"
            caps = client.server_capabilities.resources
            with pytest.raises(MCPError) as info:
                async with client.listen(resource_subscriptions=[f"taskflow://tasks/{hidden}"]):
                    pass
            async with client.listen(resource_subscriptions=[uri]) as sub:
                assert sub.honored.resource_subscriptions == [uri]
                ok(await sarah.call("update_task", task_id=hidden, title="invisible"))
                ok(await sarah.call("update_task", task_id=mine, title="changed"))
                assert await next_event(sub) == uri
                assert len(runtimes[0].hub().subscriptions) == 1  # this stream's follower
            # The stream closed: its follower left the feed with it; the session goes on.
            assert not (await client.call_tool("whoami", {})).is_error
            hub = runtimes[0].hub()
            for _ in range(50):
                if not hub.subscriptions:
                    break
                await asyncio.sleep(0.05)
            assert hub.subscriptions == set()
    assert legacy_caps is not None and not legacy_caps.subscribe
    assert caps is not None and caps.subscribe
    assert info.value.error.code == -32602


async def test_a_revoked_key_stops_notifications(
    db: Database, db_url: str, team: Team, tmp_path: Path, sarah: McpUser
) -> None:
    mine = ok(await sarah.call("create_task", title="watched"))["task"]["id"]
    uri = f"taskflow://tasks/{mine}"
    server = stdio_server(db_url, tmp_path, team.bot_key)
    server.env = {**(server.env or {}), "FEED_RECHECK_SECONDS": "0.3"}
    inbox = Inbox()
    [key] = await workers.list_api_keys(db, team.sarah, "@claude-code")
    async with Client(server, mode="legacy", message_handler=inbox) as bot:
        await bot.subscribe_resource(uri)
        ok(await sarah.call("update_task", task_id=mine, title="heard"))
        await inbox.wait_for(uri)
        await workers.revoke_api_key(db, team.sarah, "@claude-code", key.id)
        await asyncio.sleep(1.0)
        inbox.clear()
        ok(await sarah.call("update_task", task_id=mine, title="not heard"))
        await asyncio.sleep(QUIET)
        assert inbox.uris == []


async def test_listen_over_stdio(
    db: Database, db_url: str, team: Team, tmp_path: Path, sarah: McpUser
) -> None:
    """A 2026-07-28 client on stdio listens instead of subscribing; the same follower serves."""
    uri = "taskflow://projects/default"
    async with Client(stdio_server(db_url, tmp_path, team.bot_key)) as bot:
        assert bot.protocol_version == "2026-07-28"
        async with bot.listen(resource_subscriptions=[uri]) as sub:
            ok(await sarah.call("create_task", title="new in default"))
            assert await next_event(sub) == uri

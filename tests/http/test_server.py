"""The composition root: REST and MCP in one app with one lifespan, as `taskflow serve` runs it."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.runtime import Runtime
from taskflow.server import create_server_app
from tests.http.conftest import BASE_URL, Agent, assert_audited, assert_problem, settings_for

HAS_MCP = importlib.util.find_spec("taskflow.mcp_server.http") is not None
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


async def test_rest_and_mcp_share_one_app_and_lifespan(
    runtime: Runtime, bot: Agent, db: Database
) -> None:
    app = create_server_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=bot.headers
        ) as http:
            created = await http.post("/api/projects/web/tasks", json={"title": "via REST"})
            assert created.status_code == 201
            await assert_audited(db, created, "created", "@bot")
            assert_problem(await http.get("/api/no-such-thing"), 404)
            assert_problem(await http.delete("/api/projects"), 405)
            assert (await http.get("/openapi.json")).status_code == 200
            if not HAS_MCP:
                assert_problem(await http.post("/mcp", json={}), 404)
                return
            listed = await http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers=MCP_HEADERS,
            )
            assert listed.status_code == 200, listed.text
            assert listed.headers["x-request-id"]
            from taskflow.mcp_server.toolsets import default

            offered = [op.mcp for op in REGISTRY.values() if op.mcp and op.toolset in default()]
            names = [tool["name"] for tool in listed.json()["result"]["tools"]]
            assert names == offered
            anonymous = await http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                headers={**MCP_HEADERS, "Authorization": ""},
            )
            assert anonymous.status_code == 401


@pytest.mark.skipif(not HAS_MCP, reason="MCP surface not installed")
async def test_mcp_metadata_is_served_with_an_auth_server(db: Database, db_url: str) -> None:
    settings = settings_for(db_url, auth_server_url="https://auth.example.com")
    app = create_server_app(Runtime(settings, db, Authenticator(db, None)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            meta = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert meta.status_code == 200
    assert meta.json()["resource"].endswith("/mcp")

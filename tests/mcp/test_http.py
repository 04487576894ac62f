"""MCP over real Streamable HTTP (uvicorn): bearer auth, RFC 9728, Host/Origin checks, 503s."""

from __future__ import annotations

import json
import uuid

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from taskflow.core.auth.keys import generate_api_key
from taskflow.core.db import Database
from taskflow.core.services import workers
from tests.better_auth import BetterAuthServer
from tests.mcp.conftest import Team, assert_audited, audit_tail, settings_for
from tests.mcp.live import mcp_test_app, runtime_for, serving

JSONRPC_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def app_factory(db: Database, db_url: str, **settings: object):  # type: ignore[no-untyped-def]
    def build(base: str):  # type: ignore[no-untyped-def]
        config = settings_for(db_url, taskflow_public_url=base, **settings)
        return mcp_test_app(runtime_for(db, config))

    return build


async def test_no_token_gets_401_pointing_at_the_metadata(
    db: Database, db_url: str, better_auth: BetterAuthServer
) -> None:
    async with (
        serving(app_factory(db, db_url, auth_server_url=better_auth.base_url)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        response = await http.post("/mcp", json=JSONRPC_LIST, headers=ACCEPT)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{metadata_url}"' in challenge
        metadata = (await http.get(metadata_url)).json()
        bad = await http.post(
            "/mcp", json=JSONRPC_LIST, headers={**ACCEPT, "Authorization": "Bearer nope"}
        )
        health = await http.get("/health")
    assert metadata["resource"] == f"{base}/mcp"
    assert metadata["authorization_servers"] == [better_auth.base_url]
    assert bad.status_code == 401
    assert health.status_code == 200  # only the MCP routes need a token


async def test_agent_with_api_key_works_and_is_audited(
    db: Database, db_url: str, team: Team
) -> None:
    headers = {"Authorization": f"Bearer {team.bot_key}", "X-Request-ID": "req-mcp-42"}
    async with (
        serving(app_factory(db, db_url)) as base,
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        me = await client.call_tool("whoami", {})
        created = await client.call_tool("create_task", {"title": "Over HTTP"})
    assert me.structured_content["handle"] == "@claude-code"
    assert created.structured_content["task"]["title"] == "Over HTTP"
    [entry] = await audit_tail(db)
    assert_audited(entry, "created", "@claude-code")
    assert entry["client_request_id"] == "req-mcp-42" != entry["request_id"]
    assert entry["actor_key"] == team.bot_key[:11]
    assert entry["actor_type"] == "agent"


async def test_without_auth_server_only_api_keys_and_no_metadata(
    db: Database, db_url: str, team: Team
) -> None:
    async with (
        serving(app_factory(db, db_url)) as base,
        httpx.AsyncClient(base_url=base, headers=ACCEPT) as http,
    ):
        anonymous = await http.post("/mcp", json=JSONRPC_LIST)
        metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
        jwt_like = await http.post(
            "/mcp", json=JSONRPC_LIST, headers={"Authorization": "Bearer a.b.c"}
        )
        keyed = await http.post(
            "/mcp", json=JSONRPC_LIST, headers={"Authorization": f"Bearer {team.bot_key}"}
        )
    assert anonymous.status_code == 401
    assert "resource_metadata" not in anonymous.headers["www-authenticate"]
    assert metadata.status_code == 404
    assert jwt_like.status_code == 401
    assert keyed.status_code == 200
    assert len(keyed.json()["result"]["tools"]) > 15


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example.com"}, 421),
        ({"Origin": "http://evil.example.com"}, 403),
        ({"Origin": "http://localhost:3000"}, 200),
    ],
)
async def test_dns_rebinding_protection(
    db: Database, db_url: str, team: Team, headers: dict[str, str], status: int
) -> None:
    auth = {"Authorization": f"Bearer {team.bot_key}"}
    async with (
        serving(app_factory(db, db_url)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        response = await http.post("/mcp", json=JSONRPC_LIST, headers={**ACCEPT, **auth, **headers})
    assert response.status_code == status


async def test_configured_host_is_accepted(db: Database, db_url: str, team: Team) -> None:
    auth = {"Authorization": f"Bearer {team.bot_key}", **ACCEPT}
    factory = app_factory(db, db_url, allowed_hosts="tasks.example.com,127.0.0.1:*")
    async with serving(factory) as base, httpx.AsyncClient(base_url=base, headers=auth) as http:
        named = await http.post("/mcp", json=JSONRPC_LIST, headers={"Host": "tasks.example.com"})
        other = await http.post("/mcp", json=JSONRPC_LIST, headers={"Host": "localhost"})
    assert named.status_code == 200
    assert other.status_code == 421


async def test_database_down_while_authenticating_is_503_not_401(db_url: str) -> None:
    dead = Database.from_url("postgresql+asyncpg://nobody@127.0.0.1:1/nothing")
    key, _ = generate_api_key()

    def build(base: str):  # type: ignore[no-untyped-def]
        return mcp_test_app(runtime_for(dead, settings_for(db_url, taskflow_public_url=base)))

    try:
        async with (
            serving(build) as base,
            httpx.AsyncClient(base_url=base, headers=ACCEPT) as http,
        ):
            response = await http.post(
                "/mcp", json=JSONRPC_LIST, headers={"Authorization": f"Bearer {key}"}
            )
    finally:
        await dead.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "unavailable" in response.json()["error_description"]


async def test_local_mode_acts_as_the_local_user_unless_a_token_is_sent(
    db: Database, db_url: str, team: Team
) -> None:
    def build(base: str):  # type: ignore[no-untyped-def]
        config = settings_for(db_url, taskflow_public_url=base)
        return mcp_test_app(runtime_for(db, config), local_handle="@sarah")

    async def whoami(base: str, token: str | None) -> tuple[bool, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
        if result.is_error:
            return True, result.content[0].text  # type: ignore[union-attr]
        return False, result.structured_content["handle"]  # type: ignore[index]

    async with serving(build) as base:
        anonymous = await whoami(base, None)
        keyed = await whoami(base, team.bot_key)
        async with httpx.AsyncClient(base_url=base, headers=ACCEPT) as http:
            bad = await http.post(
                "/mcp", json=JSONRPC_LIST, headers={"Authorization": "Bearer tf_wrong"}
            )
            malformed = await http.post(
                "/mcp", json=JSONRPC_LIST, headers={"Authorization": "Basic abc"}
            )
    assert anonymous == (False, "@sarah")
    assert keyed == (False, "@claude-code")
    # A token that is sent is checked even where none is needed: a bad one is a 401, not a call
    # run as nobody (or as the local user).
    for refused in (bad, malformed):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer realm="taskflow", error=')
    assert "invalid API key" in bad.json()["error_description"]


async def test_get_mcp_is_405_without_sessions(db: Database, db_url: str, team: Team) -> None:
    keyed = {"Authorization": f"Bearer {team.bot_key}", "Accept": "text/event-stream"}
    async with (
        serving(app_factory(db, db_url)) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as http,
    ):
        response = await http.get("/mcp", headers=keyed)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    says = response.json()["error_description"]
    assert "POST JSON-RPC requests" in says
    assert "subscriptions/listen" in says and "list_changes" in says and "/api/events" in says


async def test_the_composition_root_serves_mcp_next_to_rest(
    db: Database, db_url: str, team: Team, better_auth: BetterAuthServer
) -> None:
    """The product's own app (taskflow/server.py), when present: same behaviour at /mcp."""
    server = pytest.importorskip("taskflow.server")

    def build(base: str):  # type: ignore[no-untyped-def]
        config = settings_for(
            db_url, taskflow_public_url=base, auth_server_url=better_auth.base_url
        )
        return server.create_server_app(runtime_for(db, config))

    keyed = {**ACCEPT, "Authorization": f"Bearer {team.bot_key}"}
    async with serving(build) as base, httpx.AsyncClient(base_url=base) as http:
        anonymous = await http.post("/mcp", json=JSONRPC_LIST, headers=ACCEPT)
        metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
        listed = await http.post("/mcp", json=JSONRPC_LIST, headers=keyed)
        everything = await http.post("/mcp?toolsets=all", json=JSONRPC_LIST, headers=keyed)
        by_header = await http.post(
            "/mcp", json=JSONRPC_LIST, headers={**keyed, "X-MCP-Toolsets": "core,admin"}
        )
        unknown = await http.post("/mcp?toolsets=nope", json=JSONRPC_LIST, headers=keyed)
    assert anonymous.status_code == 401
    assert (
        f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        in (anonymous.headers["www-authenticate"])
    )
    assert metadata.json()["authorization_servers"] == [better_auth.base_url]
    names = {t["name"] for t in listed.json()["result"]["tools"]}
    assert listed.status_code == 200 and "list_projects" in names and "create_project" not in names
    all_names = {t["name"] for t in everything.json()["result"]["tools"]}
    assert names < all_names and "create_project" in all_names
    header_names = {t["name"] for t in by_header.json()["result"]["tools"]}
    assert "create_project" in header_names and "list_tasks" in header_names
    assert "unknown toolset nope" in unknown.json()["error"]["message"]


async def test_a_signed_in_human_sees_only_its_own_email_and_subject(
    db: Database, db_url: str, team: Team, better_auth: BetterAuthServer
) -> None:
    local_part = f"rae-{uuid.uuid4().hex[:8]}"  # the Better Auth server is shared
    session = better_auth.sign_up(f"{local_part}@example.com", "password-rae-1", "Rae")
    jwt = better_auth.get_jwt(session)
    async with serving(app_factory(db, db_url, auth_server_url=better_auth.base_url)) as base:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {jwt}"}, timeout=30) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        ):
            me = (await client.call_tool("whoami", {})).structured_content
            listed = await client.call_tool("list_workers", {})
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {team.bot_key}"}) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        ):
            bot_me = (await client.call_tool("whoami", {})).structured_content
            seen = await client.call_tool("get_worker", {"handle": f"@{local_part}"})
    assert me is not None and bot_me is not None
    assert (me["handle"], me["email"]) == (f"@{local_part}", f"{local_part}@example.com")
    assert me["sso_subject"]
    assert (bot_me["email"], bot_me["sso_subject"]) == (None, None)
    for result in (listed, seen):
        text = json.dumps(result.structured_content)
        assert "@example.com" not in text and me["sso_subject"] not in text


async def test_a_deactivated_agents_key_gets_401(db: Database, db_url: str, team: Team) -> None:
    await workers.deactivate_agent(db, team.sarah, "@claude-code")
    keyed = {**ACCEPT, "Authorization": f"Bearer {team.bot_key}"}
    async with serving(app_factory(db, db_url)) as base, httpx.AsyncClient(base_url=base) as http:
        refused = await http.post("/mcp", json=JSONRPC_LIST, headers=keyed)
    assert refused.status_code == 401


def _tool_call(name: str, arguments: dict, call_id: int) -> dict:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": params}


async def test_the_server_writes_its_response_request_id_into_the_audit_entry(
    db: Database, db_url: str, team: Team
) -> None:
    """Behind the composition root the REST middleware chooses the request id: an MCP call
    without X-Request-ID finds the id of its response header in the audit entry it wrote, and
    one that sends an id finds it kept beside the server's (and echoed in X-Client-Request-ID).
    """
    from taskflow.server import create_server_app

    def build(base: str):  # type: ignore[no-untyped-def]
        return create_server_app(runtime_for(db, settings_for(db_url, taskflow_public_url=base)))

    headers = {
        **ACCEPT,
        "MCP-Protocol-Version": "2025-11-25",
        "Authorization": f"Bearer {team.bot_key}",
    }
    async with serving(build) as base, httpx.AsyncClient(base_url=base, headers=headers) as http:
        made_up = await http.post("/mcp", json=_tool_call("create_task", {"title": "No id"}, 1))
        [unnamed] = await audit_tail(db)
        given = await http.post(
            "/mcp",
            json=_tool_call("create_task", {"title": "Named"}, 2),
            headers={"X-Request-ID": "req-mcp-given-7"},
        )
        [named] = await audit_tail(db)
    assert made_up.status_code == 200 and "error" not in made_up.json(), made_up.text
    assert not made_up.json()["result"].get("isError"), made_up.text
    assert_audited(unnamed, "created", "@claude-code")
    assert unnamed["request_id"] == made_up.headers["x-request-id"]
    assert given.headers["x-client-request-id"] == "req-mcp-given-7"
    assert_audited(named, "created", "@claude-code")
    assert named["request_id"] == given.headers["x-request-id"]
    assert named["client_request_id"] == "req-mcp-given-7"

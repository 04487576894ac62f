"""A real uvicorn server (`uvicorn --factory taskflow.server:factory`) over loopback: health,
CORS preflight, and auth with an API key and with a real Better Auth JWT."""

from __future__ import annotations

import importlib.util
import uuid

import httpx
import pytest

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from tests.better_auth import BetterAuthServer
from tests.http.conftest import ORIGIN, Agent, assert_audited, assert_problem
from tests.http.live import live_server

HAS_MCP = importlib.util.find_spec("taskflow.mcp_server.http") is not None


def _env(db_url: str, **extra: str) -> dict[str, str]:
    base = {
        "DATABASE_URL": db_url,
        "ALLOWED_ORIGINS": ORIGIN,
        "AUTH_SERVER_URL": "",
        "TASKFLOW_LOCAL_USER": "",
    }
    return {**base, **extra}


@pytest.mark.timeout(120)
async def test_live_server_health_cors_and_auth(
    db: Database, db_url: str, bot: Agent, better_auth: BetterAuthServer
) -> None:
    with live_server(_env(db_url, AUTH_SERVER_URL=better_auth.base_url)) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            assert (await http.get("/health/ready")).json()["status"] == "ready"

            preflight = await http.options(
                "/api/projects/web/tasks",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            assert "POST" in preflight.headers["access-control-allow-methods"]

            anonymous = await http.get("/api/projects")
            assert_problem(anonymous, 401)
            assert anonymous.headers["www-authenticate"].startswith("Bearer")

            with_key = await http.get("/api/projects", headers=bot.headers)
            assert with_key.status_code == 200
            assert [p["slug"] for p in with_key.json()] == ["default", "web"]

            local_part = f"ann-{uuid.uuid4().hex[:8]}"  # the Better Auth server is shared
            session = better_auth.sign_up(f"{local_part}@example.com", "password1234", "Ann Lee")
            jwt = {"Authorization": f"Bearer {better_auth.get_jwt(session)}"}
            me = await http.get("/api/me", headers=jwt)
            assert me.status_code == 200, me.text
            assert (me.json()["handle"], me.json()["type"], me.json()["name"]) == (
                f"@{local_part}",
                "human",
                "Ann Lee",
            )
            # Her own email and SSO subject, from the real Better Auth token, on /api/me only.
            assert me.json()["email"] == f"{local_part}@example.com"
            assert me.json()["sso_subject"] and me.json()["sso_subject"] != me.json()["handle"]
            seen_by_bot = await http.get(f"/api/workers/@{local_part}", headers=bot.headers)
            listed = await http.get("/api/workers", headers=bot.headers)
            own_list = await http.get("/api/workers", headers=jwt)
            for body in (seen_by_bot.text, listed.text, own_list.text):
                assert "@example.com" not in body and me.json()["sso_subject"] not in body
            created = await http.post(
                "/api/projects", json={"slug": "anns", "name": "Ann's"}, headers=jwt
            )
            assert created.status_code == 201
            await assert_audited(db, created, "created", f"@{local_part}")
            assert_problem(
                await http.get("/api/me", headers={"Authorization": "Bearer a.b.c"}), 401
            )

            if HAS_MCP:
                listed = await http.post(
                    "/mcp",
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={
                        **bot.headers,
                        "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": "2025-11-25",
                    },
                )
                assert listed.status_code == 200, listed.text
        assert "Traceback" not in server.logs()


@pytest.mark.timeout(120)
async def test_live_server_without_auth_acts_as_the_local_user(
    db: Database, db_url: str, owner: Actor
) -> None:
    with live_server(_env(db_url, TASKFLOW_LOCAL_USER="@sarah")) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            me = await http.get("/api/me")
            assert me.status_code == 200 and me.json()["handle"] == "@sarah"
            document = (await http.get("/openapi.json")).json()
            assert {} in document["security"]

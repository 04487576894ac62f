"""Fixtures for the REST surface: the app over a fresh database, an agent with an API key, and
clients speaking HTTP to the ASGI app in-process (httpx ASGITransport, no server needed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import AgentType, Role, WorkerType
from taskflow.core.models import AuditEntry
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import AddMember, RegisterAgent
from taskflow.core.services import projects, workers
from taskflow.http.app import create_api

BASE_URL = "http://127.0.0.1:8000"
ORIGIN = "http://localhost:3000"


@dataclass
class Agent:
    handle: str
    token: str
    key_id: int
    actor: Actor

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def settings_for(url: str | None = None, **overrides: object) -> Settings:
    """Settings for tests only: never read the developer's .env or environment defaults."""
    values: dict[str, object] = {"allowed_origins": ORIGIN, "database_url": url}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def runtime(db: Database, db_url: str) -> Runtime:
    return Runtime(settings=settings_for(db_url), db=db, auth=Authenticator(db, None))


async def register_agent(
    db: Database,
    by: Actor,
    handle: str,
    *,
    project_role: Role | None,
    projects_: tuple[str, ...] = ("default", "web"),
    manage_agents: bool = True,
) -> Agent:
    """An agent whose key may register agents and issue keys unless `manage_agents` is false
    (tests/http/test_scopes.py checks keys without that scope)."""
    issued = await workers.register_agent(
        db,
        by,
        RegisterAgent(
            handle=handle,
            name=handle[1:],
            agent_type=AgentType.CLAUDE,
            manage_agents=manage_agents,
        ),
    )
    if project_role is not None:
        for slug in projects_:
            await projects.add_member(db, by, slug, AddMember(handle=handle, role=project_role))
    actor = Actor(worker_id=issued.worker.id, handle=handle, type=WorkerType.AGENT)
    return Agent(handle=handle, token=issued.api_key, key_id=issued.key.id, actor=actor)


@pytest.fixture
async def bot(db: Database, owner: Actor) -> Agent:
    """@bot, an agent registered by @sarah and admin of `default` and `web`."""
    return await register_agent(db, owner, "@bot", project_role=Role.ADMIN)


@pytest.fixture
def api(runtime: Runtime) -> Starlette:
    return create_api(runtime)


@pytest.fixture
async def client(api: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials; pass `headers=agent.headers` per request."""
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


@pytest.fixture
async def as_bot(api: Starlette, bot: Agent) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=bot.headers
    ) as http:
        yield http


@pytest.fixture
async def as_sarah(runtime: Runtime, owner: Actor) -> AsyncIterator[httpx.AsyncClient]:
    """@sarah through `serve --no-auth`: the local user, no token."""
    app = create_api(runtime, local_handle=owner.handle)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


async def audit_for(db: Database, response: httpx.Response) -> list[AuditEntry]:
    """The audit entries the request behind `response` wrote (matched by its request id)."""
    request_id = response.headers["x-request-id"]
    async with db.transaction() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.request_id == request_id).order_by(AuditEntry.id)
        )
        return list(rows)


async def assert_audited(
    db: Database, response: httpx.Response, action: str, actor: str, **details: object
) -> AuditEntry:
    """The request wrote an entry with this action by this actor, via http; return it."""
    entries = await audit_for(db, response)
    matching = [e for e in entries if e.action == action]
    assert matching, f"no {action!r} entry for this request; found {[e.action for e in entries]}"
    entry = matching[0]
    assert entry.actor_handle == actor
    assert entry.via == "http"
    for key, value in details.items():
        assert entry.details.get(key) == value, (key, entry.details)
    return entry


async def audit_count(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """An RFC 9457 problem document with this status (and problem type code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["type"] == f"urn:taskflow:problem:{code}", body
    return body

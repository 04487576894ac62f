"""Fixtures for the database half of authentication: authenticators and audit readers.

`auth` verifies JWTs against the session's real Better Auth server (`better_auth`); `local_auth`
is the same authenticator with no auth server, as in local mode. Both use the test's fresh
database (`db`), so every test starts with no workers, keys or audit entries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, text

from taskflow.core.auth.identity import Authenticator
from taskflow.core.auth.jwt import JwtVerifier
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.models import AuditEntry

if TYPE_CHECKING:
    from tests.better_auth import BetterAuthServer

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def verifier(better_auth: BetterAuthServer) -> AsyncIterator[JwtVerifier]:
    """A verifier built exactly as a deployment builds it: from AUTH_SERVER_URL alone."""
    settings = Settings(_env_file=None, auth_server_url=better_auth.base_url)  # type: ignore[call-arg]
    verifier = JwtVerifier.from_settings(settings)
    yield verifier
    await verifier.jwks.aclose()


@pytest.fixture
def auth(db: Database, verifier: JwtVerifier) -> Authenticator:
    return Authenticator(db, verifier)


@pytest.fixture
def local_auth(db: Database) -> Authenticator:
    """No AUTH_SERVER_URL: local mode."""
    return Authenticator(db, None)


def sign_up(server: BetterAuthServer, local_part: str = "ada", name: str = "Ada Lovelace") -> str:
    """A fresh Better Auth user `<local_part>@<unique domain>`; returns a real JWT for it.

    The domain is unique because the Better Auth server is shared by the whole session while
    each test has its own database: the local part (hence the handle) can repeat across tests.
    """
    email = f"{local_part}@{uuid.uuid4().hex[:10]}.example.com"
    return server.get_jwt(server.sign_up(email, PASSWORD, name))


async def audit_entries(db: Database, **where: Any) -> list[AuditEntry]:
    """Audit entries matching column=value filters, oldest first."""
    stmt = select(AuditEntry).order_by(AuditEntry.id)
    for column, value in where.items():
        stmt = stmt.where(getattr(AuditEntry, column) == value)
    async with db.transaction() as session:
        return list((await session.scalars(stmt)).all())


async def execute(db: Database, sql: str, **params: Any) -> None:
    """Change the database behind the services' back (to age a key, for instance)."""
    async with db.transaction() as session:
        await session.execute(text(sql), params)


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.transaction() as session:
        return await session.scalar(text(sql), params)

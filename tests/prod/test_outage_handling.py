"""What the former fault bench (bench/faults.py, now tests/prod/test_database_crash.py) found,
pinned down against a real PostgreSQL.

- A server that cannot serve right now (too many connections, crash recovery, shutting down)
  and a connection pool with no free connection are outages: `Unavailable` (503), never a raw
  driver error that surfaces as a 500.
- (An idempotency reservation can no longer be stranded by an outage: the key is reserved and
  answered in the operation's own transaction, tests/core/test_kernel.py.)
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from taskflow.core.db import Database, to_async_url
from taskflow.core.errors import Unavailable
from tests.conftest import _admin_dsn


async def test_too_many_connections_is_unavailable_not_a_crash(pg_server_url: str) -> None:
    role = f"tf_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    url = to_async_url(pg_server_url).set(username=role, password=None, database="postgres")
    db = Database.from_url(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(Unavailable, match="unavailable") as caught:
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
        assert caught.value.status == 503
        assert caught.value.__cause__.orig.sqlstate == "53300"  # too_many_connections
    finally:
        await db.close()
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_an_exhausted_pool_is_unavailable_not_a_crash(db_url: str) -> None:
    engine = create_async_engine(
        to_async_url(db_url), pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    db = Database.over_engine(engine)
    try:
        async with db.transaction() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(Unavailable, match="too busy"):
                async with db.transaction() as session:
                    await session.execute(text("SELECT 1"))
        async with db.transaction() as session:  # and once a connection is free, it works
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await db.close()

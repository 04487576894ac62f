"""What the former fault bench (bench/faults.py, now tests/prod/test_database_crash.py) found,
pinned down against a real PostgreSQL.

- A server that cannot serve right now (too many connections, crash recovery, shutting down)
  and a connection pool with no free connection are outages: `Unavailable` (503), never a raw
  driver error that surfaces as a 500.
- An idempotency reservation stranded by an outage (committed, then the request failed and could
  not drop it) does not block its key for 24 hours: once its request cannot still be running, a
  retry takes it over, unless the audit log shows the first request was applied, in which case
  the retry is refused instead of applied twice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from taskflow.core.db import Database, to_async_url
from taskflow.core.domain import Via
from taskflow.core.errors import Conflict, Unavailable
from taskflow.core.idempotency import request_hash, run_once
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.conftest import _admin_dsn
from tests.core.conftest import snapshot


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
    db = Database(engine, async_sessionmaker(engine, expire_on_commit=False))
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


async def _strand(
    db: Database,
    worker_id: int,
    key: str,
    scope: str,
    body: object,
    request_id: str,
    age: timedelta,
) -> None:
    """The row a request leaves when the database dies between reserving and answering."""
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO idempotency_keys (worker_id, key, scope, request_hash, response, "
                "created_at) VALUES (:w, :k, :s, :h, CAST(:r AS jsonb), "
                "now() - CAST(:age AS interval))"
            ),
            {
                "w": worker_id,
                "k": key,
                "s": scope,
                "h": request_hash(scope, body),
                "r": f'{{"pending_request_id": "{request_id}"}}',
                "age": age,
            },
        )


async def test_a_stranded_reservation_is_taken_over_once_its_request_is_gone(db, owner) -> None:
    body = {"title": "after the outage"}
    await _strand(db, owner.worker_id, "k1", "POST /t", body, "lost-request", timedelta(minutes=10))
    calls: list[int] = []

    async def create() -> tuple[int, object]:
        calls.append(1)
        cmd = CreateTask(title="after the outage", project="web")
        detail = await tasks.create_task(db, owner.through(Via.HTTP, "retry-1"), cmd)
        return 201, {"id": detail.task.id}

    status, first, replayed = await run_once(db, owner, "k1", "POST /t", body, create)
    assert (status, replayed, len(calls)) == (201, False, 1)
    assert await run_once(db, owner, "k1", "POST /t", body, create) == (201, first, True)
    assert len(calls) == 1, "the retry after the takeover is a replay"


async def test_a_stranded_reservation_whose_request_was_applied_is_refused(db, owner) -> None:
    cmd = CreateTask(title="applied before the crash", project="web")
    await tasks.create_task(db, owner.through(Via.HTTP, "applied-request"), cmd)
    body = {"title": "applied before the crash"}
    await _strand(
        db, owner.worker_id, "k2", "POST /t", body, "applied-request", timedelta(minutes=10)
    )
    before = await snapshot(db)

    async def create() -> tuple[int, object]:
        raise AssertionError("an applied request must not run again")

    with pytest.raises(Conflict, match="was applied"):
        await run_once(db, owner, "k2", "POST /t", body, create)
    assert await snapshot(db) == before


async def test_a_recent_reservation_still_belongs_to_its_request(db, owner) -> None:
    await _strand(db, owner.worker_id, "k3", "POST /t", {}, "running-request", timedelta(seconds=1))

    async def create() -> tuple[int, object]:
        raise AssertionError("a running request's key must not be taken over")

    with pytest.raises(Conflict, match="still being processed"):
        await run_once(db, owner, "k3", "POST /t", {}, create)

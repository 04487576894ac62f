"""REST limits: rate per worker (429 + Retry-After + problem), body size, JSON depth, lists,
and one audit verification at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.handlers import audit as audit_ops
from taskflow.core.limits import RateLimiter
from taskflow.core.models import Task
from taskflow.core.runtime import Runtime
from taskflow.http.app import create_api
from tests.http.conftest import BASE_URL, Agent, assert_problem, register_agent, settings_for

WRITES = 3  # the burst: 60 writes a minute, 3 seconds' worth at once


@pytest.fixture
def limited(db: Database, db_url: str) -> Runtime:
    settings = settings_for(
        db_url,
        rate_limit_writes_per_minute=60,
        rate_limit_reads_per_minute=60,
        rate_limit_burst_seconds=WRITES,
    )
    limiter = RateLimiter.from_settings(settings, db)
    return Runtime(settings=settings, db=db, auth=Authenticator(db, None), limiter=limiter)


@pytest.fixture
async def http(limited: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(limited))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client
    await limited.close()


async def _tasks(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


async def test_writes_over_the_limit_get_429_with_retry_after_and_change_nothing(
    http: httpx.AsyncClient, bot: Agent, db: Database
) -> None:
    url = "/api/projects/default/tasks"
    for n in range(WRITES):
        created = await http.post(url, json={"title": f"t{n}"}, headers=bot.headers)
        assert created.status_code == 201, created.text
    before = await _tasks(db)
    refused = await http.post(url, json={"title": "one too many"}, headers=bot.headers)
    body = assert_problem(refused, 429, "rate-limited")
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 2 and body["retry_after"] == retry
    assert body["detail"] == f"rate limit: @bot may make 60 writes per minute; retry in {retry} s"
    assert body["limit"] == 60 and body["kind"] == "write"
    assert await _tasks(db) == before
    # Reads are counted apart: the writer may still read.
    listed = await http.get("/api/tasks", headers=bot.headers)
    assert listed.status_code == 200, listed.text
    # After Retry-After a token is back.
    await asyncio.sleep(retry)
    again = await http.post(url, json={"title": "later"}, headers=bot.headers)
    assert again.status_code == 201, again.text


async def test_one_workers_limit_is_not_anothers(
    http: httpx.AsyncClient, bot: Agent, db: Database, owner: Actor
) -> None:
    other = await register_agent(db, owner, "@other", project_role=Role.MEMBER)
    url = "/api/projects/default/tasks"
    for _ in range(WRITES + 2):
        await http.post(url, json={"title": "flood"}, headers=bot.headers)
    assert (await http.post(url, json={"title": "x"}, headers=bot.headers)).status_code == 429
    mine = await http.post(url, json={"title": "mine"}, headers=other.headers)
    assert mine.status_code == 201, mine.text


async def test_reads_have_their_own_limit(http: httpx.AsyncClient, bot: Agent) -> None:
    for _ in range(WRITES):
        assert (await http.get("/api/tasks", headers=bot.headers)).status_code == 200
    refused = await http.get("/api/tasks", headers=bot.headers)
    body = assert_problem(refused, 429, "rate-limited")
    assert "reads per minute" in body["detail"] and refused.headers["retry-after"]


async def test_the_buckets_are_shared_by_replicas_and_outlive_a_restart(
    db: Database, db_url: str, bot: Agent
) -> None:
    """Two processes' limiters on one database: what one spends, the other sees after a sync;
    a limiter started afresh (a restarted process) finds the bucket as it was."""
    settings = settings_for(db_url, rate_limit_writes_per_minute=60, rate_limit_burst_seconds=3)
    one = RateLimiter.from_settings(settings, db)
    two = RateLimiter.from_settings(settings, db)
    assert one is not None and two is not None
    worker = bot.actor.worker_id
    for _ in range(3):
        one.take(worker, True)
    await one.sync()
    two.take(worker, True)  # its own copy was full: one overshoot, flushed by its sync
    await two.sync()
    with pytest.raises(Exception, match="retry in") as refused:
        two.take(worker, True)
    assert refused.value.status == 429  # type: ignore[attr-defined]
    restarted = RateLimiter.from_settings(settings, db)
    assert restarted is not None
    restarted.take(worker, True)
    await restarted.sync()
    with pytest.raises(Exception, match="retry in"):
        restarted.take(worker, True)
    for limiter in (one, two, restarted):
        await limiter.close()


async def test_an_oversized_body_is_413(http: httpx.AsyncClient, bot: Agent) -> None:
    big = {"title": "x", "description": "y" * (1024 * 1024 + 1)}
    refused = await http.post("/api/projects/default/tasks", json=big, headers=bot.headers)
    body = assert_problem(refused, 413)
    assert "1048576 bytes" in body["detail"]


@pytest.mark.parametrize("depth", [40, 100_000])
async def test_too_deep_json_is_refused(
    http: httpx.AsyncClient, bot: Agent, db: Database, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    raw = '{"title": "deep", "tags": ' + nested + "}"
    refused = await http.post(
        "/api/projects/default/tasks",
        content=raw,
        headers={**bot.headers, "Content-Type": "application/json"},
    )
    if depth == 40:  # valid JSON, deeper than any command takes: 422 naming the limit
        body = assert_problem(refused, 422, "validation-failed")
        assert "nested more than 32 levels" in body["detail"]
    else:  # beyond the JSON parser's own recursion limit: not JSON we read
        body = assert_problem(refused, 400)
        assert "not valid JSON" in body["detail"]
    assert await _tasks(db) == 0


async def test_list_sizes_are_bounded_and_documented(http: httpx.AsyncClient, bot: Agent) -> None:
    too_many = [f"t{i}" for i in range(51)]
    refused = await http.post(
        "/api/projects/default/tasks", json={"title": "x", "tags": too_many}, headers=bot.headers
    )
    assert_problem(refused, 422, "validation-failed")
    query = "&".join(f"tags=t{i}" for i in range(51))
    assert_problem(await http.get(f"/api/tasks?{query}", headers=bot.headers), 422)
    spec = (await http.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    text = json.dumps(schemas)
    assert '"maxItems": 50' in text and '"maxItems": 200' in text
    assert "429" in json.dumps(spec["paths"]["/api/projects/{project}/tasks"]["post"]["responses"])


async def test_one_audit_verification_at_a_time(
    http: httpx.AsyncClient, bot: Agent, db_url: str
) -> None:
    """A verification held up (here: by a lock on the log) makes a second concurrent one a 429
    with Retry-After; the first still finishes."""
    blocker = await asyncpg.connect(
        make_url(db_url).set(drivername="postgresql").render_as_string(False)
    )
    held = blocker.transaction()
    await held.start()
    await blocker.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
    first = asyncio.create_task(http.get("/api/audit/verify", headers=bot.headers))
    try:
        for _ in range(200):  # until the first one is running (and waiting for the lock)
            if audit_ops._VERIFYING:
                break
            await asyncio.sleep(0.02)
        assert audit_ops._VERIFYING
        busy = await http.get("/api/audit/verify", headers=bot.headers)
        body = assert_problem(busy, 429, "rate-limited")
        assert busy.headers["retry-after"] == "5" and "retry in 5 s" in body["detail"]
    finally:
        await held.rollback()
        await blocker.close()
    done = await first
    assert done.status_code == 200 and done.json()["ok"] is True
    assert not audit_ops._VERIFYING


async def test_a_process_forgets_buckets_unused_until_full(db: Database, db_url: str) -> None:
    settings = settings_for(db_url, rate_limit_writes_per_minute=600, rate_limit_burst_seconds=0.2)
    limiter = RateLimiter.from_settings(settings, db)
    assert limiter is not None
    limiter.take(1, True)
    await limiter.sync()
    assert (1, "write") in limiter.buckets
    for bucket in limiter.buckets.values():
        bucket.used -= 60  # as if unused for a minute: full again long since
    await limiter.sync()
    assert not limiter.buckets
    await limiter.close()

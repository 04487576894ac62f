"""PostgreSQL killed mid-load: every call answered (503 / isError), then the same server
process recovers by itself, and the audit log holds all of each change or none of it.

The server's PostgreSQL is the test's own embedded one (the suite's shared server cannot be
crashed): `pg_ctl stop -m immediate` while agents work over REST and MCP, down a few seconds,
then started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from taskflow.core.db import Database, upgrade
from tests.support.servers import EmbeddedPostgres, fresh_database, serve
from tests.support.team import (
    PROJECT,
    Team,
    chain_verifies,
    seed_team,
    versions_without_entries,
)

pytestmark = pytest.mark.slow

AGENTS = 4
DOWN_S = 3.0
RECOVERY_BOUND_S = 15.0
SLOWEST_ANSWER_S = 5.0
ACCEPT = {"Accept": "application/json, text/event-stream"}


@dataclass
class Answer:
    at: float
    surface: str
    status: int
    unavailable: bool  # REST 503 problem+json, MCP HTTP 503 or isError "unavailable"
    seconds: float


@dataclass
class Log:
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # no answer at all


def rest_unavailable(r: httpx.Response) -> bool:
    return (
        r.status_code == 503
        and r.headers.get("content-type", "").startswith("application/problem+json")
        and r.headers.get("retry-after") == "5"
    )


def mcp_unavailable(r: httpx.Response) -> bool:
    if r.status_code == 503:
        return "retry-after" in r.headers
    result = r.json().get("result", {})
    text = " ".join(c.get("text", "") for c in result.get("content", []))
    return bool(result.get("isError")) and "unavailable" in text


async def agent(base: str, key: str, log: Log, stop: asyncio.Event, n: int) -> None:
    """Alternates a REST claim + progress and an MCP whoami until told to stop."""
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
        while not stop.is_set():
            for surface, send, unavailable in (
                (
                    "rest",
                    lambda: http.post(f"/api/projects/{PROJECT}/claim", json={}),
                    rest_unavailable,
                ),
                (
                    "mcp",
                    lambda: http.post(
                        "/mcp",
                        headers=ACCEPT,
                        json={
                            "jsonrpc": "2.0",
                            "id": n,
                            "method": "tools/call",
                            "params": {"name": "whoami", "arguments": {}},
                        },
                    ),
                    mcp_unavailable,
                ),
            ):
                start = time.monotonic()
                try:
                    r = await send()
                except httpx.HTTPError as exc:
                    log.failures.append(f"{surface}: {exc!r}")
                    continue
                log.answers.append(
                    Answer(start, surface, r.status_code, unavailable(r), time.monotonic() - start)
                )
            await asyncio.sleep(0.02)


@contextlib.contextmanager
def crashable_database() -> Iterator[tuple[EmbeddedPostgres, str]]:
    embedded = EmbeddedPostgres()
    try:
        with fresh_database(embedded.url, "tf_crash") as url:
            yield embedded, url
    finally:
        embedded.close()


async def _seed(url: str) -> Team:
    db = Database.from_url(url, pool_size=2)
    try:
        await upgrade(db)
        return await seed_team(db, agents=AGENTS, open_tasks=200)
    finally:
        await db.close()


async def _database_facts(url: str) -> tuple[list[int], bool]:
    db = Database.from_url(url, pool_size=2)
    try:
        return await versions_without_entries(db), await chain_verifies(db)
    finally:
        await db.close()


async def _crash_under_load(
    pg: EmbeddedPostgres, base: str, team: Team
) -> tuple[Log, float, float, float]:
    """Agents at work; PostgreSQL killed, down DOWN_S, started again; load until recovered."""
    log, stop = Log(), asyncio.Event()
    load = [asyncio.create_task(agent(base, k, log, stop, i)) for i, k in enumerate(team.keys)]
    await asyncio.sleep(1.5)
    await asyncio.to_thread(pg.stop_immediate)
    down_from = time.monotonic()
    await asyncio.sleep(DOWN_S)
    down_to = time.monotonic()
    await asyncio.to_thread(pg.start)
    up_at = time.monotonic()
    while time.monotonic() - up_at < RECOVERY_BOUND_S:
        if any(a.at > up_at and a.status == 200 for a in log.answers[-20:]):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*load)
    return log, down_from, down_to, up_at


def test_postgres_killed_mid_load_every_call_answered_then_recovery() -> None:
    """Sync on purpose: the crashable server and its database are set up with asyncio.run."""
    with crashable_database() as (pg, url):
        team = asyncio.run(_seed(url))
        with serve("crash", url) as server:
            run = _crash_under_load(pg, server.base_url, team)
            log, down_from, down_to, up_at = asyncio.run(run)
            tracebacks = server.tracebacks()
            server_logs = server.logs()
        unaudited, verifies = asyncio.run(_database_facts(url))
    during = [a for a in log.answers if a.at > down_from + 0.2 and a.at + a.seconds < down_to]
    after = [a for a in log.answers if a.at > up_at]
    assert log.failures == [], "every call got an answer"
    assert {a.status for a in log.answers} <= {200, 404, 409, 503}, "no 5xx but 503"
    assert during and {a.surface for a in during} == {"rest", "mcp"}
    assert all(a.unavailable for a in during), [a for a in during if not a.unavailable][:3]
    assert max(a.seconds for a in log.answers) < SLOWEST_ANSWER_S, "no request hung"
    recovered = [a for a in after if a.status == 200]
    assert recovered, "the same server process answers again after the restart"
    assert recovered[0].at - up_at < RECOVERY_BOUND_S
    assert tracebacks == 0, server_logs
    assert unaudited == [], "all of each change or none of it"
    assert verifies

"""TaskFlow through a real PgBouncer in transaction mode (the setup of Neon's `-pooler` hosts).

In transaction mode a client's consecutive transactions may land on different server connections,
so a prepared statement made in one is missing (or already taken) in the next. These tests show
that this really happens on the pooler they use (the control), that TaskFlow's pooled settings
avoid it, and that the real services stay correct when many clients share two server connections:
every transaction went through the pooler (its admin console counts them), no prepared-statement
error occurs, the audit chain verifies and no audit entry is lost.

Skipped, with the reason, only where PgBouncer is missing and cannot be installed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database, current_revision, head_revision, is_pooled, to_async_url
from taskflow.core.db import upgrade as migrate
from taskflow.core.errors import Unavailable
from taskflow.core.schemas import AddMember, CreateProject, CreateTask, SubtaskSpec, TaskFilter
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.conftest import _admin_dsn, drop_database, fresh_database, make_human
from tests.pgbouncer import PgBouncer, PgBouncerUnavailable, admin_query, start_pgbouncer

SERVER_CONNECTIONS = 2  # per database: far fewer than the clients sharing them
WORKERS = 8
ROUNDS = 4
PROGRESS_STEPS = (25, 50, 75)


@pytest.fixture(scope="module")
def bouncer(pg_server_url: str) -> Iterator[PgBouncer]:
    try:
        started = start_pgbouncer(pg_server_url, pool_size=SERVER_CONNECTIONS)
    except PgBouncerUnavailable as exc:
        pytest.skip(f"no PgBouncer here: {exc}")
    yield started
    started.stop()


@pytest.fixture
async def pooled_db_name(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh migrated database (made over the direct URL) for this test's own pool."""
    name = await fresh_database(pg_server_url, template_db)
    yield name
    await drop_database(pg_server_url, name)


def _row_for(rows: list[dict[str, str | None]], database: str) -> dict[str, str | None]:
    matching = [r for r in rows if r["database"] == database]
    assert matching, f"PgBouncer has no entry for {database}: {rows}"
    return matching[0]


def _stat(bouncer: PgBouncer, database: str, column: str) -> int:
    """A SHOW STATS counter; 0 before the database's first client (PgBouncer adds it then)."""
    rows = [r for r in admin_query(bouncer, "SHOW STATS") if r["database"] == database]
    return int(rows[0][column] or 0) if rows else 0


async def _xacts_reach(bouncer: PgBouncer, database: str, at_least: int) -> int:
    """PgBouncer folds its counters in every stats_period (1 s here): wait for them."""
    deadline = time.monotonic() + 5
    while (seen := _stat(bouncer, database, "total_xact_count")) < at_least:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return seen


async def _interleave(url: str, *, pooled: bool | None) -> None:
    """Client A prepares a statement; client B then holds that server connection in an open
    transaction, so A's next transaction runs on the other server connection."""
    a = Database.from_url(url, pooled=pooled, pool_size=1)
    b = Database.from_url(url, pooled=pooled, pool_size=1)
    query = text("SELECT count(*) FROM tasks WHERE id > :floor")
    try:
        async with a.transaction() as session:
            assert await session.scalar(query, {"floor": 0}) == 0
        async with b.transaction() as holding:
            await holding.execute(text("SELECT 1"))
            async with a.transaction() as session:
                assert await session.scalar(query, {"floor": 0}) == 0
    finally:
        await a.close()
        await b.close()


async def test_the_pooler_is_in_transaction_mode_and_breaks_cached_statements(
    bouncer: PgBouncer, pooled_db_name: str
) -> None:
    """The control: with asyncpg's statement cache on (a direct-connection engine) the same
    interleaving fails, so the pooled test below would notice if the pooled settings did not
    matter or the pooler were not really multiplexing transactions."""
    with pytest.raises(Unavailable, match="set DATABASE_POOLED=true") as caught:
        await _interleave(bouncer.url(pooled_db_name), pooled=False)
    # The collision itself, answered as one line naming the setting instead of a 500.
    assert isinstance(caught.value.__cause__, DBAPIError)
    assert "prepared statement" in str(caught.value.__cause__)
    pools = _row_for(admin_query(bouncer, "SHOW POOLS"), pooled_db_name)
    assert pools["pool_mode"] == "transaction"


async def test_pooled_settings_survive_the_interleaving(
    bouncer: PgBouncer, pooled_db_name: str
) -> None:
    url = bouncer.url(pooled_db_name)
    assert is_pooled(to_async_url(url), None), "port 6432 is detected as a pooler"
    before = _stat(bouncer, pooled_db_name, "total_xact_count")
    await _interleave(url, pooled=None)
    assert await _xacts_reach(bouncer, pooled_db_name, before + 3) >= before + 3


async def _team(db: Database) -> list[Actor]:
    owner = await make_human(db, "@sarah")
    await projects.create_project(db, owner, CreateProject(slug="web", name="Web"))
    team = [owner]
    for i in range(1, WORKERS):
        member = await make_human(db, f"@dev-{i}")
        await projects.add_member(db, owner, "web", AddMember(handle=member.handle))
        team.append(member)
    return team


async def _work(db: Database, actor: Actor, rounds: int) -> int:
    """A worker's day through the real services; returns the transactions it ran."""
    count = 0
    for r in range(rounds):
        created = await tasks.create_task(
            db,
            actor,
            CreateTask(
                title=f"{actor.handle} round {r}",
                project="web",
                subtasks=[SubtaskSpec(title=f"step {i}") for i in range(3)],
            ),
        )
        child = created.subtree[0].id
        await workflow.start(db, actor, child)
        for percent in PROGRESS_STEPS:
            await workflow.progress(db, actor, child, percent)
        detail = await task_queries.get_task(db, actor, created.task.id)
        assert len(detail.subtree) == 3
        page = await task_queries.list_tasks(db, actor, TaskFilter(project="web", limit=5))
        assert page.items
        count += 3 + len(PROGRESS_STEPS) + 1
    return count


async def test_many_clients_share_two_server_connections_without_errors(
    bouncer: PgBouncer, pooled_db_name: str, pg_server_url: str
) -> None:
    url = bouncer.url(pooled_db_name)
    db = Database.from_url(url, pool_size=WORKERS)  # pooled: detected from the URL
    try:
        team = await _team(db)
        before = _stat(bouncer, pooled_db_name, "total_xact_count")
        ran = await asyncio.wait_for(
            asyncio.gather(*(_work(db, actor, ROUNDS) for actor in team)), timeout=120
        )

        clients = [
            c for c in admin_query(bouncer, "SHOW CLIENTS") if c["database"] == pooled_db_name
        ]
        servers = [
            s for s in admin_query(bouncer, "SHOW SERVERS") if s["database"] == pooled_db_name
        ]
        assert len(clients) > SERVER_CONNECTIONS, "the engine opened more clients than servers"
        assert 0 < len(servers) <= SERVER_CONNECTIONS
        assert await _xacts_reach(bouncer, pooled_db_name, before + sum(ran)) >= before + sum(ran)

        result = await audit.verify(db)  # streams through a server-side cursor
        assert result.ok, result.problems
        value = await audit.digest(db)  # reads outside an explicit transaction
        assert await audit.check_digest(db, value)
    finally:
        await db.close()

    direct = await asyncpg.connect(_admin_dsn(pg_server_url, pooled_db_name))
    try:
        progressed = await direct.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'progressed'"
        )
        entries = await direct.fetchval("SELECT count(*) FROM audit_log")
    finally:
        await direct.close()
    assert progressed == WORKERS * ROUNDS * len(PROGRESS_STEPS), "no audit entry lost"
    assert result.entries_checked == entries


async def test_migrations_and_the_startup_check_work_through_the_pooler(
    bouncer: PgBouncer, pg_server_url: str
) -> None:
    """Docs say: migrate over the direct URL. The startup check (`upgrade` at head is one query)
    and, if it comes to that, a whole migration also work through the pooler: one transaction."""
    name = f"tf_pooled_migrate_{os.getpid()}"
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    db = Database.from_url(bouncer.url(name), pool_size=1)
    try:
        assert await current_revision(db) is None
        await migrate(db)
        assert await current_revision(db) == head_revision()
        await migrate(db)  # at head: only the check
    finally:
        await db.close()
        await drop_database(pg_server_url, name)

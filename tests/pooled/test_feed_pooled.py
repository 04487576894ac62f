"""The live feed behind a real PgBouncer in transaction mode, which cannot LISTEN: the server
falls back to polling the log, or LISTENs on `DATABASE_DIRECT_URL` while all else stays pooled.

Skipped, with the reason, only where PgBouncer is missing and cannot be installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from taskflow.core.db import Database
from tests.conftest import database_url_for, drop_database, fresh_database
from tests.pgbouncer import PgBouncer, PgBouncerUnavailable, start_pgbouncer
from tests.support.servers import plain_dsn, serve
from tests.support.sse import SseReader
from tests.support.team import seed_team

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bouncer(pg_server_url: str) -> Iterator[PgBouncer]:
    try:
        started = start_pgbouncer(pg_server_url, pool_size=4)
    except PgBouncerUnavailable as exc:
        pytest.skip(f"no PgBouncer here: {exc}")
    yield started
    started.stop()


@pytest.fixture
async def name(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    made = await fresh_database(pg_server_url, template_db)
    yield made
    await drop_database(pg_server_url, made)


async def test_pooled_server_polls_or_listens_on_the_direct_url(
    bouncer: PgBouncer, pg_server_url: str, name: str
) -> None:
    direct = database_url_for(pg_server_url, name)
    db = Database.from_url(direct, pool_size=2)
    try:
        team = await seed_team(db, agents=1, open_tasks=1)
    finally:
        await db.close()
    auth = {"Authorization": f"Bearer {team.keys[0]}"}
    pooled = {"DATABASE_POOLED": "true", "FEED_POLL_SECONDS": "0.2"}
    for env, mode in (
        (pooled, "poll"),
        ({**pooled, "DATABASE_DIRECT_URL": plain_dsn(direct)}, "listen"),
    ):
        with serve(f"feed-{mode}", bouncer.url(name), env) as server:
            async with (
                httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=30) as http,
                SseReader(http) as live,
            ):
                said = await http.post(
                    f"/api/tasks/{team.task_ids[0]}/comments", json={"body": f"via {mode}"}
                )
                assert said.status_code == 201, said.text
                event = await live.next(5)
                assert event.data["details"]["body"] == f"via {mode}"
            logs = server.logs()
        assert ("announces new audit entries" in logs) is (mode == "listen"), logs[-2000:]
        assert "Traceback" not in logs

"""The app's database role cannot rewrite history (migration 0010).

Two ways in: as the role itself (`SET LOCAL ROLE taskflow_app` on a test database, which works
on any server and through PgBouncer), and through the real embedded default, whose app logs in
as `taskflow_app` while migrations run as the server's superuser.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg
import pytest

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.bootstrap import open_runtime
from taskflow.core.config import Settings
from taskflow.core.db import APP_ROLE, role_report
from taskflow.core.domain import WorkerType
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks as task_service

REFUSED = (asyncpg.InsufficientPrivilegeError,)


def _plain(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _as_app(conn: asyncpg.Connection, sql: str) -> None:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        await conn.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "UPDATE audit_log SET action = 'approved'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "DROP TRIGGER audit_log_no_update_delete ON audit_log",
        "DELETE FROM audit_heads",
        "LOCK TABLE audit_log IN SHARE MODE",
        "UPDATE alembic_version SET version_num = '0001'",
    ],
)
async def test_the_app_role_cannot_alter_the_audit_log(db, owner, db_url, sql):
    await task_service.create_task(db, owner, CreateTask(title="history"))
    conn = await asyncpg.connect(_plain(db_url))
    try:
        before = await conn.fetchval("SELECT count(*) FROM audit_log")
        with pytest.raises(REFUSED):
            await _as_app(conn, sql)
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == before
    finally:
        await conn.close()


async def test_the_app_role_does_its_work(db, owner, db_url):
    """What the app needs it has: read and append the log, move the heads, the digest's lock."""
    conn = await asyncpg.connect(_plain(db_url))
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            await conn.execute("SELECT audit_log_share_lock()")
            await conn.fetchval("SELECT count(*) FROM audit_log")
            await conn.execute("UPDATE audit_heads SET seq = seq")
            await conn.execute("INSERT INTO rate_buckets VALUES (1, 'write', 1, 1, 1, 0, now())")
            await conn.execute("DELETE FROM idempotency_keys")
    finally:
        await conn.close()


async def test_the_suites_superuser_is_reported_as_able_to_alter_it(db):
    report = await role_report(db)
    assert report.superuser and report.could_alter_audit_log


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_the_embedded_default_connects_as_the_app_role(embedded_dir: Path):
    """A fresh embedded database: migrated by the superuser, used as `taskflow_app`, which can
    neither disable the trigger nor rewrite an entry, while the app works (create, verify)."""
    from taskflow.core import embedded
    from taskflow.core.services import onboarding

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=None,
        database_pooled=False,  # its own server, whatever the suite's PgBouncer pass says
        taskflow_data_dir=embedded_dir,
        taskflow_embedded_idle_minutes=0,
    )
    runtime = await open_runtime(settings)
    try:
        report = await role_report(runtime.db)
        assert report.role == APP_ROLE
        assert not report.could_alter_audit_log
        setup = await onboarding.init_local(runtime.db, "@you", "You")
        actor = Actor(worker_id=setup.user.id, handle="@you", type=WorkerType.HUMAN)
        await task_service.create_task(runtime.db, actor, CreateTask(title="x"))
        result = await audit.verify(runtime.db)
        assert result.ok and result.entries_checked >= 2
        assert (await audit.digest(runtime.db)).startswith("tfd1:")
        raw_url = runtime.db.engine.url.set(drivername="postgresql")
        conn = await asyncpg.connect(raw_url.render_as_string(hide_password=False))
        try:
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            for sql in (
                "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                "UPDATE audit_log SET action = 'approved'",
                "DELETE FROM audit_log",
            ):
                with pytest.raises(REFUSED):
                    await conn.execute(sql)
        finally:
            await conn.close()
    finally:
        await runtime.close()
        with contextlib.suppress(Exception):  # cleanup only: a busy machine may be slow to stop
            await asyncio.to_thread(embedded.stop, embedded_dir)

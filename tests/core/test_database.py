"""Schema migrations, the embedded default, database URLs (direct and pooled), and how database
failures reach callers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from taskflow.core import audit
from taskflow.core.config import Settings
from taskflow.core.db import (
    Database,
    build_engine,
    current_revision,
    downgrade,
    head_revision,
    is_pooled,
    open_database,
    to_async_url,
    upgrade,
)
from taskflow.core.errors import Unavailable
from taskflow.core.models import Base
from taskflow.core.schemas import CreateProject
from taskflow.core.services import projects
from tests.conftest import _admin_dsn, database_url_for, drop_database, make_human

SCHEMA_TABLES = {
    "alembic_version",
    "api_keys",
    "audit_heads",
    "comments",
    "audit_log",
    "idempotency_keys",
    "import_records",
    "rate_buckets",
    "project_members",
    "projects",
    "task_dependencies",
    "task_reminders",
    "tasks",
    "webhook_attempts",
    "webhook_deliveries",
    "webhooks",
    "workers",
}


async def _empty_database(pg_server_url: str, name: str) -> str:
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return database_url_for(pg_server_url, name)


async def _objects(db: Database) -> dict[str, set[str]]:
    """What lives in the public schema: tables, functions, sequences, triggers, indexes."""
    queries = {
        "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public'",
        "sequences": "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'",
        "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
        "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
    }
    out = {}
    async with db.engine.connect() as conn:
        for kind, sql in queries.items():
            out[kind] = {r[0] for r in (await conn.execute(text(sql))).all()}
    return out


async def test_upgrade_from_empty_downgrade_to_empty_and_upgrade_again(pg_server_url):
    name = f"tf_migrate_{os.getpid()}"
    db = Database.from_url(await _empty_database(pg_server_url, name), pool_size=2)
    try:
        assert await current_revision(db) is None
        await upgrade(db)
        assert await current_revision(db) == head_revision() != ""
        up = await _objects(db)
        assert up["tables"] == SCHEMA_TABLES
        assert {"audit_log_no_update_delete", "audit_log_no_truncate"} <= up["triggers"]
        assert "comments_no_update" in up["triggers"]
        assert "audit_log_refuse_change" in up["functions"]
        assert "audit_log_webhook_outbox" in up["triggers"] and "webhook_outbox" in up["functions"]
        assert {"ix_tasks_project_status", "ix_tasks_tags", "ix_tasks_claimable"} <= up["indexes"]
        assert "ix_tasks_parent_id_id" in up["indexes"]  # replaced the parent_id-only index
        assert "ix_tasks_parent_id" not in up["indexes"]
        async with db.engine.connect() as conn:  # planned on statistics from the start
            analyzed = await conn.scalar(
                text("SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
            )
        assert analyzed >= 6

        await downgrade(db)
        down = await _objects(db)
        assert down["tables"] == {"alembic_version"}
        assert down["functions"] == set() and down["sequences"] == set()
        assert down["triggers"] == set()
        assert await current_revision(db) is None

        await upgrade(db)
        assert (await _objects(db)) == up
        sarah = await make_human(db, "@sarah")
        await projects.create_project(db, sarah, CreateProject(slug="again", name="Again"))
        assert (await audit.verify(db)).ok
    finally:
        await db.close()
        await drop_database(pg_server_url, name)


async def test_models_match_the_migrated_schema(db):
    """An ORM change without a migration (or the reverse) shows up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_concurrent_starters_migrate_once(pg_server_url):
    """Two replicas booting at once on an empty database: the advisory lock serialises them."""
    name = f"tf_race_{os.getpid()}"
    url = await _empty_database(pg_server_url, name)
    dbs = [Database.from_url(url, pool_size=1) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(d) for d in dbs))
        assert await current_revision(dbs[0]) == head_revision()
        await upgrade(dbs[0])  # at head already: a no-op
    finally:
        for d in dbs:
            await d.close()
        await drop_database(pg_server_url, name)


@pytest.mark.parametrize(
    "form",
    ["postgresql", "postgresql+asyncpg", "postgres", "postgresql-sslmode"],
)
async def test_database_url_forms(db_url, form):
    """As Neon and psql print it (`postgresql://`, with libpq's sslmode/channel_binding) or in
    SQLAlchemy's spelling (`postgresql+asyncpg://`)."""
    url = make_url(db_url)
    if form == "postgresql-sslmode":
        query = {**url.query, "sslmode": "disable", "channel_binding": "disable"}
        url = url.set(drivername="postgresql", query=query)
    else:
        url = url.set(drivername=form)
    settings = Settings(database_url=url.render_as_string(hide_password=False))
    db = await open_database(settings)
    try:
        assert await current_revision(db) == head_revision()
        mike = await make_human(db, "@mike")
        assert mike.handle == "@mike"
    finally:
        await db.close()


def test_pooled_detection():
    neon = to_async_url("postgresql://u:p@ep-cool-123456-pooler.eu-central-1.aws.neon.tech/db")
    assert is_pooled(neon, None)
    assert is_pooled(to_async_url("postgresql://u@db.internal:6432/app"), None)
    direct = to_async_url("postgresql://u@ep-cool-123456.eu-central-1.aws.neon.tech:5432/db")
    assert not is_pooled(direct, None)
    assert is_pooled(direct, True) and not is_pooled(neon, False)
    assert to_async_url("postgresql://u@h/db?sslmode=require&channel_binding=require").query == {
        "ssl": "require"
    }


class _Captured(Exception):
    pass


@pytest.mark.parametrize(
    ("url", "pooled", "cache_off"),
    [
        ("postgresql://u:p@ep-x-123-pooler.eu-central-1.aws.neon.tech/db", None, True),
        ("postgresql://u:p@127.0.0.1:6432/db", None, True),
        ("postgresql://u:p@127.0.0.1:5432/db", None, False),
        ("postgresql://u:p@127.0.0.1:5432/db", True, True),
    ],
)
async def test_pooled_urls_turn_statement_caching_off(url, pooled, cache_off):
    """The connect arguments asyncpg would get (captured before any network traffic)."""
    engine = build_engine(url, pooled=pooled)
    seen: dict = {}

    @event.listens_for(engine.sync_engine, "do_connect")
    def capture(dialect, conn_rec, cargs, cparams):
        seen.update(cparams)
        raise _Captured

    with pytest.raises(_Captured):
        async with engine.connect():
            pass
    await engine.dispose()
    assert (seen.get("statement_cache_size") == 0) is cache_off
    assert (seen.get("prepared_statement_cache_size") == 0) is cache_off


async def test_a_pooled_engine_works_end_to_end(db_url):
    """With caching off (as behind PgBouncer), the services still work, statement after
    statement, and asyncpg really keeps no prepared statements."""
    db = Database.from_url(db_url, pooled=True, pool_size=2)
    try:
        sarah = await make_human(db, "@sarah")
        for i in range(3):
            await projects.create_project(db, sarah, CreateProject(slug=f"p{i}", name="P"))
        assert [p.slug for p in await projects.list_projects(db, sarah)] == ["p0", "p1", "p2"]
        async with db.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw._stmt_cache.get_max_size() == 0
        assert (await audit.verify(db)).ok
    finally:
        await db.close()


async def test_unreachable_database_is_unavailable_not_a_crash():
    db = Database.from_url("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(Unavailable, match="retry"):
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await db.close()


async def test_embedded_default_starts_migrates_and_is_reused(tmp_path: Path):
    """No DATABASE_URL: pgserver under the data dir, migrated; the next start (after the server
    stopped, as when the CLI process exits) reuses the same data."""
    import pgserver

    settings = Settings(taskflow_data_dir=tmp_path, database_url=None)
    pgdata = tmp_path / "pgdata"
    try:
        db = await open_database(settings)
        try:
            assert await current_revision(db) == head_revision()
            await make_human(db, "@first-run")
        finally:
            await db.close()
        assert (pgdata / "PG_VERSION").exists()
        pgserver.get_server(pgdata).cleanup()  # stop it, as at process exit

        again = await open_database(settings)
        try:
            assert await current_revision(again) == head_revision()
            async with again.engine.connect() as conn:
                handles = (await conn.execute(text("SELECT handle FROM workers"))).scalars().all()
            assert handles == ["@first-run"]
        finally:
            await again.close()
    finally:
        pgserver.get_server(pgdata).cleanup()

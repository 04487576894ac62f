"""Shared fixtures: a real PostgreSQL (embedded by default), migrated once into a template
database, and a fresh copy of it for every test that asks for `db`.

Set TASKFLOW_TEST_DATABASE_URL (a server URL with rights to CREATE DATABASE) to run the suite
against another PostgreSQL, e.g. the machine's PostgreSQL 15. Set TASKFLOW_TEST_PGBOUNCER=1 to
reach every test database through a real PgBouncer in transaction mode (tests/pgbouncer.py).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from taskflow.core.actor import Actor
from taskflow.core.db import Database, to_async_url, upgrade
from taskflow.core.domain import Via, WorkerType
from taskflow.core.schemas import CreateHuman, CreateProject
from taskflow.core.services import projects, workers
from tests import pgbouncer

pytest_plugins = ["tests.better_auth"]

TEMPLATE = "tf_template"
_counter = itertools.count()


def _admin_dsn(url: str, database: str) -> str:
    """A plain asyncpg DSN to `database` on the same server (asyncpg wants no driver suffix)."""
    parsed = to_async_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The server the suite uses: TASKFLOW_TEST_DATABASE_URL, or an embedded one in a temp dir."""
    external = os.environ.get("TASKFLOW_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="tf-pg-"))
    server = pgserver.get_server(tmp / "pgdata", cleanup_mode="stop")
    yield str(make_url(server.get_uri()).set(drivername="postgresql+asyncpg"))
    server.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def app_server_url(pg_server_url: str) -> Iterator[str]:
    """The server as the application reaches it (`db_url` points here): the server itself, or,
    with TASKFLOW_TEST_PGBOUNCER=1, a real PgBouncer in transaction mode in front of it with
    DATABASE_POOLED=true. Admin work (CREATE/DROP DATABASE, migrations) uses `pg_server_url`."""
    if not pgbouncer.flag_set():
        yield pg_server_url
        return
    with pgbouncer.running_pgbouncer(pg_server_url) as bouncer, pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_POOLED", "true")
        yield bouncer.server_url


def database_url_for(server_url: str, name: str) -> str:
    return to_async_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def template_db(pg_server_url: str) -> str:
    """Migrate once; every test then copies the migrated template (fast, and fully isolated)."""
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    db = Database.from_url(database_url_for(pg_server_url, TEMPLATE), pool_size=1)
    await upgrade(db)
    await db.close()
    return TEMPLATE


async def fresh_database(pg_server_url: str, template: str) -> str:
    name = f"tf_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    return name


async def drop_database(pg_server_url: str, name: str) -> None:
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def db_url(pg_server_url: str, app_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A URL to a fresh, migrated, empty database of this test's own."""
    name = await fresh_database(pg_server_url, template_db)
    yield database_url_for(app_server_url, name)
    await drop_database(pg_server_url, name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url, pool_size=5)
    yield database
    await database.close()


async def make_human(db: Database, handle: str, name: str | None = None) -> Actor:
    worker = await workers.create_human(db, CreateHuman(handle=handle, name=name or handle[1:]))
    return Actor(worker_id=worker.id, handle=worker.handle, type=WorkerType.HUMAN, via=Via.CORE)


@pytest.fixture
async def owner(db: Database) -> Actor:
    """@sarah, owner of the `default` and `web` projects."""
    actor = await make_human(db, "@sarah", "Sarah Chen")
    await projects.create_project(db, actor, CreateProject(slug="default", name="Default"))
    await projects.create_project(db, actor, CreateProject(slug="web", name="Web app"))
    return actor

"""Engine, sessions, the embedded PostgreSQL, and migrations on startup.

With no `DATABASE_URL`, TaskFlow runs its own PostgreSQL (pgserver) under the data directory so a
first-time user needs no setup. Behind a transaction-mode pooler (PgBouncer, Neon's `-pooler`
hosts) asyncpg's prepared-statement cache breaks, so it is turned off there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskflow.core import dsn, embedded
from taskflow.core.config import Settings
from taskflow.core.errors import Conflict, TaskFlowError, Unavailable, ValidationFailed

if TYPE_CHECKING:  # SQLAlchemy loads with the engine, on first use: a plain read never needs it
    from sqlalchemy.engine import URL
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

    from taskflow.core.driver import Lane

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def to_async_url(url: str) -> URL:
    """Accept `postgresql://` (as Neon and psql print it) and `postgresql+asyncpg://` alike, as
    SQLAlchemy's URL (`taskflow.core.dsn.engine_url` is the same without SQLAlchemy)."""
    from sqlalchemy.engine import make_url

    return make_url(dsn.engine_url(url))


def is_pooled(url: URL | str, setting: bool | None) -> bool:
    """Transaction-mode poolers break prepared statements; detect the common ones by address."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return dsn.is_pooled(text, setting)


POOL_TIMEOUT_SECONDS = 10.0
"""How long a statement waits for a free connection before the call answers 503."""

CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 30


def build_engine(url: str, *, pooled: bool | None = None, pool_size: int = 10) -> AsyncEngine:
    """One engine per process, whose idle connections are checked before reuse."""
    from sqlalchemy.ext.asyncio import create_async_engine

    connect_args: dict[str, Any] = {
        "command_timeout": STATEMENT_TIMEOUT_SECONDS,
        "timeout": CONNECT_TIMEOUT_SECONDS,
    }
    if is_pooled(url, pooled):
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__tf_{uuid.uuid4().hex}__"
    # Up to 2 x pool_size connections, each kept once opened: an overflow connection would be
    # closed at every check-in, so a burst above pool_size reconnected (a server process forked)
    # for almost every request.
    engine = create_async_engine(
        dsn.engine_url(url),
        pool_size=2 * pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=connect_args,
    )
    ping_idle_connections(engine)
    return engine


IDLE_PING_SECONDS = 5.0


def ping_idle_connections(engine: AsyncEngine, idle: float = IDLE_PING_SECONDS) -> None:
    """Ping a pooled connection before reuse only when it sat idle for `idle` seconds.

    Servers close idle connections (Neon suspends, PgBouncer and firewalls time out, a restart
    drops them all); a dead one is replaced here instead of failing the next request. A
    connection in steady use skips the ping, which would otherwise cost a round trip on every
    checkout (SQLAlchemy's `pool_pre_ping`). A connection that dies while busy is caught by
    SQLAlchemy's disconnect handling, which invalidates the pool, and answered as 503.
    """
    from sqlalchemy import event
    from sqlalchemy.exc import DisconnectionError

    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            dbapi_conn.ping()
        except Exception as exc:  # any failure means: not usable, get another
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


Heal = Callable[[], Awaitable[bool]]
"""Restarts a database found gone (the embedded one); True when it did."""


class Database:
    """The one handle every service receives: the URL, and the SQLAlchemy engine and session
    factory built from it on first use.

    Single statements run on the driver's lane (`taskflow.core.driver`), asyncpg connections
    opened straight from the URL; a process that only runs those (a plain read from the CLI)
    never builds the engine, so never imports SQLAlchemy.
    """

    def __init__(
        self,
        url: str,
        *,
        pooled: bool | None = None,
        pool_size: int = 10,
        heal: Heal | None = None,
        owner_url: str | None = None,
        login_role: str | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.pooled = is_pooled(url, pooled)
        self.heal = heal
        self.owner_url = owner_url
        """The schema owner's URL when the app connects as a less privileged role (migration
        0010): migrations run there (`upgrade`). None: this database's own role migrates."""
        self.login_role = login_role
        """The embedded database: the role the app logs in as, given LOGIN after migrating."""
        self._engine = engine
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.lane: Lane | None = None
        """The driver's connections (`taskflow.core.driver.lane_of`), made on first use."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Database:
        return cls(url, **options)

    @classmethod
    def over_engine(cls, engine: AsyncEngine) -> Database:
        """A database over an engine someone built by hand (tests of the pool's behaviour)."""
        return cls(engine.url.render_as_string(hide_password=False), engine=engine)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = build_engine(self.url, pooled=self.pooled, pool_size=self.pool_size)
            if self.lane is not None:
                self.lane.follow(self._engine)
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any error.

        Connection failures become `Unavailable` so every surface answers 503, not 500.
        """
        async with self.guarded(), self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection without BEGIN/COMMIT: for hot paths of one or two independent statements
        (authenticating a key) where a transaction would double the round trips.

        Behind a transaction-mode pooler each autocommit statement may land on another server
        connection, between asyncpg's prepare and execute; there, a transaction pins them.
        """
        if self.pooled:
            async with self.guarded(), self.engine.begin() as conn:
                yield conn
            return
        async with self.guarded(), self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def guarded(self) -> AsyncIterator[None]:
        """`translate_errors`, and on an outage a chance to heal: a restarted embedded database
        leaves only dead connections in the pool, so the pool is replaced. The failed call still
        answers 503 (its unit of work cannot be replayed safely); the next one is served."""
        try:
            async with translate_errors():
                yield
        except Unavailable:
            await self.recover()
            raise

    async def open_pool(self) -> None:
        """Open a pooled connection now (building the engine): a process that will run many
        calls (the interactive session) opens its connections once, at start, not mid-way."""
        async with self.guarded(), self.engine.connect():
            pass

    async def recover(self) -> bool:
        """Heal a database found gone (when this one can); True when it was restarted."""
        if self.heal is None or not await self.heal():
            return False
        await self._drop_connections()
        return True

    async def close(self) -> None:
        await self._drop_connections()

    async def _drop_connections(self) -> None:
        """Every connection closed: the engine's pool (disposing it also closes the lane's,
        `Lane.follow`) and the lane's."""
        if self._engine is not None:
            await self._engine.dispose()
        if self.lane is not None:
            await self.lane.aclose()


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Database failures as domain errors: outages become 503, refused values 422/409."""
    try:
        yield
    except (OSError, ConnectionError) as exc:
        raise Unavailable(
            "the database is unavailable; retry in a few seconds", cause=str(exc)
        ) from exc
    except Exception as exc:
        refusal = _sqlalchemy_refusal(exc)
        if refusal is None:
            raise
        raise refusal from exc


def _sqlalchemy_refusal(exc: Exception) -> TaskFlowError | None:
    """What a SQLAlchemy error means to a caller; None for anything else. An error can only be
    SQLAlchemy's once SQLAlchemy is loaded, so a process that never loaded it skips this."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, (OperationalError, InterfaceError)):
        return Unavailable("the database is unavailable; retry in a few seconds", cause=str(exc))
    if isinstance(exc, PoolTimeout):  # every pooled connection busy for `pool_timeout` seconds
        return Unavailable(
            "the server is too busy: no database connection became free; retry in a few seconds",
            cause=str(exc),
        )
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return Unavailable("the database connection was lost; retry")
    if is_outage(exc):
        return Unavailable("the database is unavailable; retry in a few seconds")
    if is_pooler_symptom(exc):
        return Unavailable(UNDECLARED_POOLER)
    return refusal_for(exc)


# SQLSTATE classes of a server that cannot serve right now: connection exceptions (08),
# insufficient resources (53: too many connections), operator intervention (57P: shutting down,
# crashed, "the database system is starting up" during crash recovery).
_OUTAGE_STATES = ("08", "53", "57P")


def is_outage(exc: DBAPIError) -> bool:
    """The database cannot serve right now (it will again): answer 503, never 500."""
    state = str(getattr(exc.orig, "sqlstate", None) or "")
    return state.startswith(_OUTAGE_STATES)


# What asyncpg's prepared statements meet behind a transaction-mode pooler: a name already
# taken (42P05) or missing (26000) on the server connection the pooler picked. TaskFlow names no
# statements itself, so these mean an undeclared pooler.
_POOLER_STATES = ("42P05", "26000")
UNDECLARED_POOLER = (
    "the database at DATABASE_URL is behind a transaction-mode pooler (PgBouncer, a -pooler "
    "host): set DATABASE_POOLED=true"
)


def is_pooler_symptom(exc: DBAPIError) -> bool:
    return str(getattr(exc.orig, "sqlstate", None) or "") in _POOLER_STATES


def refusal_for(exc: DBAPIError) -> TaskFlowError | None:
    """A value the database refused (SQLSTATE class 22 or 23) is bad input or a lost race, not a
    crash: answer it as a domain error (422 or 409) instead of letting it surface as a 500."""
    state = str(getattr(exc.orig, "sqlstate", None) or "")
    detail = str(getattr(exc.orig, "__cause__", None) or exc.orig).splitlines()[0]
    return refusal_for_state(state, detail)


def refusal_for_state(state: str, detail: str) -> TaskFlowError | None:
    """`refusal_for` by SQLSTATE and message: also for errors straight from asyncpg
    (`taskflow.core.driver`), which SQLAlchemy never wrapped."""
    if state in ("23505", "23503", "23P01"):
        return Conflict(
            f"the change collides with another one ({detail}): read the current state and retry",
            sqlstate=state,
        )
    if state in ("40001", "40P01"):
        return Conflict(
            "the change collided with a concurrent one and was rolled back: retry it",
            sqlstate=state,
        )
    if state.startswith(("22", "23")):
        return ValidationFailed(
            f"a value was refused by the database ({detail}): fix the input and retry",
            sqlstate=state,
        )
    return None


def database_url(
    settings: Settings,
    *,
    keep_running: bool = False,
    notice: Callable[[embedded.Started], None] | None = None,
) -> str:
    """`DATABASE_URL`, or the embedded server started (or joined) now; blocking.

    `keep_running` leaves the embedded server up for the next process (the CLI, where starting
    it on every command would cost a second); it then stops after
    TASKFLOW_EMBEDDED_IDLE_MINUTES unused. `notice` is told how it was found (restarted after a
    crash, started fresh), for a surface that says so.
    """
    if settings.database_url:
        return settings.database_url
    started = embedded.start(
        settings.data_dir,
        keep_running=keep_running,
        idle_minutes=settings.taskflow_embedded_idle_minutes,
    )
    if notice is not None:
        notice(started)
    return started.url


APP_ROLE = "taskflow_app"
"""The role migration 0010 makes: no right to alter, update or delete the audit log."""


def as_role(url: str, role: str) -> str:
    """The same server and database, logged in as `role` (the embedded server trusts local
    logins, so no password)."""
    return dsn.as_role(url, role)


def connect(settings: Settings, url: str | None = None, *, pool_size: int = 10) -> Database:
    """A `Database` for the settings (blocking: may start the embedded server). The embedded one
    heals itself: a long-running process restarts it when it finds it gone, and its app logs
    in as `taskflow_app` while migrations run as the server's superuser. With DATABASE_URL,
    DATABASE_MIGRATION_URL (when set) is the owner's URL that migrates."""
    url = url or database_url(settings)
    if settings.database_url:
        owner = settings.database_migration_url
        owner = owner if owner and owner != settings.database_url else None
        return Database.from_url(
            url, pooled=settings.database_pooled, pool_size=pool_size, owner_url=owner
        )
    heal = embedded.Healer(settings.data_dir, settings.taskflow_embedded_idle_minutes)
    return Database.from_url(
        as_role(url, APP_ROLE),
        pooled=settings.database_pooled,
        pool_size=pool_size,
        heal=heal,
        owner_url=url,
        login_role=APP_ROLE,
    )


async def open_database(
    settings: Settings, *, migrate: bool = True, pool_size: int = 10
) -> Database:
    """Connect (starting the embedded server if needed) and bring the schema up to date."""
    db = await asyncio.to_thread(connect, settings, pool_size=pool_size)
    try:
        await check_pooling(db, settings)
        if migrate:
            await upgrade(db)
    except BaseException:
        await db.close()
        raise
    return db


async def check_pooling(db: Database, settings: Settings) -> None:
    """Refuse, in one line naming the setting, a transaction-mode pooler not declared pooled.

    Otherwise asyncpg's prepared statements collide there, at random and later, as a
    `DuplicatePreparedStatementError`. The check: two client connections, one after the other,
    ask for their server process. Straight to PostgreSQL (or through a session-mode pooler) they
    differ; a transaction-mode pooler hands the second the server connection the first just
    released (PgBouncer reuses the most recently freed one), or its prepared statements collide.
    """
    if not settings.database_url or db.pooled:
        return
    import asyncpg

    from taskflow.core import driver  # here: the driver builds on this module

    first: asyncpg.Connection | None = await driver.open_connection(db)
    second: asyncpg.Connection | None = None
    try:
        second = await driver.open_connection(db)
        pids = [await conn.fetchval("SELECT pg_backend_pid()") for conn in (first, second)]
        if pids[0] == pids[1]:
            raise Unavailable(UNDECLARED_POOLER)
        if driver.lane_of(db).adopt(first):  # the first statement's connection, ready
            first = None
    except asyncpg.PostgresError as exc:  # anything else (unreachable, refused login): caller's
        if str(getattr(exc, "sqlstate", "")) in _POOLER_STATES:
            raise Unavailable(UNDECLARED_POOLER) from exc
        raise
    finally:
        await asyncio.gather(*(c.close() for c in (first, second) if c is not None))


def _alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


_REVISION_RE = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN_RE = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.M)


def _head_from_files() -> str | None:
    """The head read straight from the version files: importing Alembic costs ~0.3 s per start.

    None when any file is unusual (then Alembic decides).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION_RE.search(source), _DOWN_RE.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    fast = _head_from_files()
    if fast is not None:
        return fast
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head() or ""


@dataclass(frozen=True)
class RoleReport:
    """Which role the app connects as, and what it could do to the audit log."""

    role: str
    superuser: bool
    owns_audit_log: bool
    may_rewrite_audit_log: bool

    @property
    def could_alter_audit_log(self) -> bool:
        """Could disable the append-only trigger, or update or delete history."""
        return self.superuser or self.owns_audit_log or self.may_rewrite_audit_log


_ROLE_REPORT = """
    SELECT current_user AS role, r.rolsuper AS superuser,
           coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false) AS owns,
           coalesce(has_table_privilege(c.oid, 'UPDATE')
                    OR has_table_privilege(c.oid, 'DELETE')
                    OR has_table_privilege(c.oid, 'TRUNCATE'), false) AS rewrites
    FROM pg_roles r
    LEFT JOIN pg_class c ON c.oid = to_regclass('audit_log')
    WHERE r.rolname = current_user
"""


async def role_report(db: Database) -> RoleReport:
    """The app's role and its rights over `audit_log` (for `taskflow db status`)."""
    from taskflow.core import driver

    async with db.guarded():
        row = await driver.fetchrow(db, _ROLE_REPORT)
    assert row is not None  # the role is logged in, so it exists
    return RoleReport(row["role"], bool(row["superuser"]), bool(row["owns"]), bool(row["rewrites"]))


def _driver_errors() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when the app role cannot log in yet (a fresh embedded database)."""
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError)


async def current_revision(db: Database) -> str | None:
    """The schema version in the database; None on an empty database. One statement on the
    driver's lane: every CLI command asks this first."""
    import asyncpg

    from taskflow.core import driver  # here: the driver builds on this module

    try:
        async with translate_errors():
            row = await driver.fetchrow(db, "SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    return None if row is None else row["version_num"]


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate forward; a database already at head costs one query, keeping startup fast.

    With an owner URL (`Database.owner_url`) the app's own role only reads the revision; when
    that is not head (or the role cannot log in yet: a fresh embedded database), the owner
    migrates over a connection of its own, and the embedded app role gets LOGIN.
    """
    if db.owner_url is None:
        if revision == "head" and await current_revision(db) == head_revision():
            return
        await _run_alembic(db, "upgrade", revision)
        await analyze(db)
        return
    if revision == "head":
        with contextlib.suppress(TaskFlowError, OSError, *_driver_errors()):
            if await current_revision(db) == head_revision():
                return
    owner = Database.from_url(db.owner_url, pool_size=1)
    try:
        await upgrade(owner, revision)
        if db.login_role is not None:
            from taskflow.core import driver

            async with owner.guarded():
                await driver.fetchrow(owner, _LOGIN.format(role=db.login_role))
    finally:
        await owner.close()


_LOGIN = """
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}' AND NOT rolcanlogin) THEN
        ALTER ROLE {role} LOGIN;
    END IF;
END $$
"""


# What bulk writes (a migration, a Phase 1 import) fill; see `analyze`.
BULK_TABLES = ("tasks", "audit_log", "audit_heads", "projects", "project_members", "workers")


async def analyze(db: Database, tables: tuple[str, ...] = BULK_TABLES) -> None:
    """Refresh the planner's statistics now, rather than whenever autovacuum gets round to it.

    A table planned on no statistics, or on those of when it was empty, can turn an index
    lookup per row into a scan of the table per row (issue 12 saw a subtree read go from
    milliseconds to seconds). Sampled, so it stays quick on big tables.
    """
    from sqlalchemy import text

    async with db.engine.begin() as conn:
        await conn.execute(text(f"ANALYZE {', '.join(tables)}"))


async def downgrade(db: Database, revision: str = "base") -> None:
    await _run_alembic(db, "downgrade", revision)


async def _run_alembic(db: Database, verb: str, revision: str) -> None:
    from alembic import command
    from sqlalchemy import text

    def run(sync_conn: Any) -> None:
        getattr(command, verb)(_alembic_config(sync_conn), revision)

    async with db.engine.begin() as conn:
        # Serialise concurrent starters (two replicas booting at once) on one advisory lock.
        await conn.execute(text("SELECT pg_advisory_xact_lock(7270412)"))
        await conn.run_sync(run)

"""Helpers for the core suite: a team of workers with each role, table snapshots that prove a
refused operation changed nothing, audit-tail readers, and a statement counter."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role, WorkerType
from taskflow.core.errors import TaskFlowError
from taskflow.core.schemas import AddMember, RegisterAgent
from taskflow.core.services import projects, workers
from tests.conftest import _admin_dsn, make_human
from tests.snapshots import snapshot


@pytest.fixture(scope="session", autouse=True)
async def _throwaway_server_skips_fsync(pg_server_url: str) -> None:
    """The embedded test server lives in a temp dir for one run: durability buys nothing there,
    and without fsync each per-test CREATE DATABASE takes ~40 ms instead of ~500 ms. A server
    given by TASKFLOW_TEST_DATABASE_URL is never reconfigured."""
    if os.environ.get("TASKFLOW_TEST_DATABASE_URL"):
        return
    conn = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def refused(
    db: Database, call: Awaitable[Any], error: type[TaskFlowError], match: str | None = None
) -> TaskFlowError:
    """Await `call`, expect exactly `error` (not a subclass), and prove no table changed."""
    before = await snapshot(db)
    with pytest.raises(error, match=match) as info:
        await call
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}"
    assert await snapshot(db) == before, "a refused operation changed the database"
    return info.value


async def last_audit_id(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_log")))


async def entries_after(db: Database, after_id: int) -> list[dict[str, Any]]:
    """The audit entries written after `after_id`, oldest first, as plain dicts."""
    async with db.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text("SELECT * FROM audit_log WHERE id > :id ORDER BY id"), {"id": after_id}
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


class AuditTail:
    """Marks the end of the log; `new()` returns what was appended since."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.mark = 0

    async def start(self) -> AuditTail:
        self.mark = await last_audit_id(self.db)
        return self

    async def new(self) -> list[dict[str, Any]]:
        return await entries_after(self.db, self.mark)

    async def one(self) -> dict[str, Any]:
        got = await self.new()
        assert len(got) == 1, [(e["action"], e["entity_type"], e["entity_id"]) for e in got]
        return got[0]


async def tail(db: Database) -> AuditTail:
    return await AuditTail(db).start()


def assert_entry(
    entry: dict[str, Any],
    *,
    action: str,
    actor: Actor,
    entity: str,
    entity_id: int | None = None,
    via: str = "core",
) -> None:
    assert entry["action"] == action
    assert entry["actor_handle"] == actor.handle
    assert entry["actor_id"] == actor.worker_id
    assert entry["actor_type"] == str(actor.type)
    assert entry["entity_type"] == entity
    assert entry["via"] == via
    if entity_id is not None:
        assert entry["entity_id"] == entity_id


async def sql(db: Database, statement: str, **params: Any) -> list[Any]:
    """Run raw SQL in its own committed transaction (test setup and inspection only)."""
    async with db.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def scalar(db: Database, statement: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return await conn.scalar(text(statement), params)


async def add_to(db: Database, owner: Actor, project: str, handle: str, role: Role) -> Actor:
    """A new human with `role` in `project`."""
    actor = await make_human(db, handle)
    await projects.add_member(db, owner, project, AddMember(handle=handle, role=role))
    return actor


async def make_agent(db: Database, by: Actor, handle: str) -> Actor:
    issued = await workers.register_agent(db, by, RegisterAgent(handle=handle, name=handle[1:]))
    return Actor(worker_id=issued.worker.id, handle=handle, type=WorkerType.AGENT)


@dataclass
class Team:
    """@sarah owns `web`; @ada admin, @mike and @nina members, @vic viewer; @olive is outside."""

    owner: Actor
    admin: Actor
    member: Actor
    member2: Actor
    viewer: Actor
    stranger: Actor


@pytest.fixture
async def team(db: Database, owner: Actor) -> Team:
    return Team(
        owner=owner,
        admin=await add_to(db, owner, "web", "@ada", Role.ADMIN),
        member=await add_to(db, owner, "web", "@mike", Role.MEMBER),
        member2=await add_to(db, owner, "web", "@nina", Role.MEMBER),
        viewer=await add_to(db, owner, "web", "@vic", Role.VIEWER),
        stranger=await make_human(db, "@olive"),
    )


@contextmanager
def count_queries(db: Database) -> Iterator[list[str]]:
    """Every SQL statement sent to the server inside the block."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", before)

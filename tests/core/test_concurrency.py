"""Many workers at once: claims never have two winners, re-parenting races never make a cycle."""

from __future__ import annotations

import asyncio
from collections import Counter

from taskflow.core import audit
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.errors import Conflict, NotFound
from taskflow.core.schemas import AddMember, CreateTask, EditTask, SubtaskSpec
from taskflow.core.services import projects, tasks, workflow
from tests.core.conftest import make_agent, scalar, sql

AGENTS = 20
TASKS = 100


async def _claim_until_empty(db: Database, agent) -> list[int]:
    mine: list[int] = []
    while True:
        try:
            mine.append((await workflow.claim_next(db, agent, project="web")).id)
        except NotFound:
            return mine


async def test_twenty_agents_claim_a_hundred_tasks_each_exactly_once(db_url, db, owner):
    agents = [await make_agent(db, owner, f"@agent-{i:02d}") for i in range(AGENTS)]
    for agent in agents:
        await projects.add_member(db, owner, "web", AddMember(handle=agent.handle))
    parent = (await tasks.create_task(db, owner, CreateTask(title="batch", project="web"))).task
    specs = [SubtaskSpec(title=f"job {i}") for i in range(TASKS)]
    jobs = {t.id for t in await tasks.add_subtasks(db, owner, parent.id, specs)}

    wide = Database.from_url(db_url, pool_size=AGENTS + 5)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(_claim_until_empty(wide, a) for a in agents)), timeout=90
        )
    finally:
        await wide.close()

    claimed = [task_id for mine in results for task_id in mine]
    assert Counter(claimed).most_common(1)[0][1] == 1, "a task was claimed twice"
    assert set(claimed) == jobs, "every leaf claimed; the parent never"
    rows = await sql(
        db,
        "SELECT t.id, w.handle, t.status FROM tasks t JOIN workers w ON w.id = t.assignee_id "
        "WHERE t.parent_id = :p",
        p=parent.id,
    )
    owner_of = {task_id: agents[i].handle for i, mine in enumerate(results) for task_id in mine}
    assert {r.id: r.handle for r in rows} == owner_of
    assert {r.status for r in rows} == {"in_progress"}
    entries = await sql(
        db, "SELECT entity_id, actor_handle FROM audit_log WHERE action = 'claimed'"
    )
    assert {(e.entity_id, e.actor_handle) for e in entries} == set(owner_of.items())
    assert len(entries) == TASKS
    assert (await audit.verify(db)).ok


async def _has_cycle(db: Database) -> bool:
    """Cycle detection without trusting the recursive readers (which would loop on a cycle)."""
    return bool(
        await scalar(
            db,
            """
            WITH RECURSIVE up(start, id, path, cyc) AS (
                SELECT id, parent_id, ARRAY[id], false FROM tasks WHERE parent_id IS NOT NULL
                UNION ALL
                SELECT up.start, t.parent_id, up.path || t.id, t.id = ANY(up.path)
                FROM up JOIN tasks t ON t.id = up.id
                WHERE NOT up.cyc AND t.parent_id IS NOT NULL
            )
            SELECT EXISTS (SELECT 1 FROM up WHERE cyc OR id = start)
            """,
        )
    )


async def test_concurrent_reparenting_cannot_make_a_cycle(db_url, db, owner):
    """Two moves that are each fine alone but close a loop together (A under B while B goes
    under A, or under A's child C), started at the same moment: exactly one is refused."""
    wide = Database.from_url(db_url, pool_size=10)
    try:
        for round_ in range(16):
            a = (await tasks.create_task(db, owner, CreateTask(title="a", project="web"))).task
            b = (await tasks.create_task(db, owner, CreateTask(title="b", project="web"))).task
            c = (await tasks.create_task(db, owner, CreateTask(title="c", parent_id=a.id))).task
            target = a.id if round_ % 2 else c.id
            results = await asyncio.gather(
                tasks.edit_task(wide, owner, a.id, EditTask(parent_id=b.id)),
                tasks.edit_task(wide, owner, b.id, EditTask(parent_id=target)),
                return_exceptions=True,
            )
            assert not await _has_cycle(db), "two concurrent re-parents made a cycle"
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(failures) == 1, results
            assert isinstance(failures[0], Conflict) and "cycle" in str(failures[0]), results
    finally:
        await wide.close()


async def test_concurrent_owner_removals_leave_an_owner(db_url, db, owner):
    """Two owners removing each other at once: one must stay."""
    wide = Database.from_url(db_url, pool_size=10)
    try:
        for i in range(10):
            slug = f"p{i}"
            await projects.create_project(db, owner, projects.CreateProject(slug=slug, name=slug))
            other = await make_agent(db, owner, f"@co-owner-{i}")
            await projects.add_member(
                db, owner, slug, AddMember(handle=other.handle, role=Role.OWNER)
            )
            results = await asyncio.gather(
                projects.remove_member(wide, owner, slug, other.handle),
                projects.remove_member(wide, other, slug, owner.handle),
                return_exceptions=True,
            )
            owners = await scalar(
                db,
                "SELECT count(*) FROM project_members m JOIN projects p ON p.id = m.project_id "
                "WHERE p.slug = :s AND m.role = 'owner'",
                s=slug,
            )
            assert owners == 1, (owners, results)
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(failures) == 1 and isinstance(failures[0], (Conflict, NotFound)), results
    finally:
        await wide.close()

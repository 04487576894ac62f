"""32 agents claiming at once from a graph of 500 tasks with dependencies (issue 13).

Each agent claims the next ready task, checks that the claim's own answer shows every blocker
done, completes it, and claims again until the whole graph is done. No task may be claimed
twice, none before its blockers were completed, and the audit chains still verify.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.domain import Priority, Role, WorkerType
from taskflow.core.errors import NotFound
from taskflow.core.handlers.coordination import ChangeDependencies
from taskflow.core.handlers.workflow import ClaimNext, Complete
from taskflow.core.schemas import AddMember, CreateTask, RegisterAgent
from taskflow.core.services import projects, workers
from tests.core.conftest import sql

pytestmark = pytest.mark.slow

AGENTS = 32
TASKS = 500
DEADLINE_S = 55.0


async def test_32_agents_drain_a_500_task_graph_in_dependency_order(db_url, owner, db):
    rng = random.Random(13)
    ids: list[int] = []
    blockers: dict[int, list[int]] = {}
    priorities = list(Priority)
    for i in range(TASKS):
        created = await run(
            db,
            owner,
            CreateTask(title=f"t{i}", project="web", priority=rng.choice(priorities)),
        )
        task_id = created.task.id
        if ids and rng.random() < 0.7:
            chosen = sorted(set(rng.sample(ids[-60:], k=min(len(ids[-60:]), rng.randint(1, 3)))))
            await run(db, owner, ChangeDependencies(task_id=task_id, blocked_by=chosen))
            blockers[task_id] = chosen
        ids.append(task_id)
    agents = []
    for n in range(AGENTS):
        handle = f"@agent-{n}"
        issued = await workers.register_agent(db, owner, RegisterAgent(handle=handle, name=handle))
        await projects.add_member(db, owner, "web", AddMember(handle=handle, role=Role.MEMBER))
        agents.append(Actor(worker_id=issued.worker.id, handle=handle, type=WorkerType.AGENT))

    crowd = Database.from_url(db_url, pool_size=16)
    claimed: list[int] = []
    unready: list[tuple[int, list[int]]] = []
    done: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S

    async def agent(actor: Actor) -> None:
        while len(done) < TASKS and time.monotonic() < deadline:
            try:
                task = await run(crowd, actor, ClaimNext(project="web"))
            except NotFound:
                await asyncio.sleep(0.005)  # everything ready is taken: others will free more
                continue
            claimed.append(task.id)
            if not all(b.done for b in task.blocked_by) or (
                sorted(b.id for b in task.blocked_by) != blockers.get(task.id, [])
            ):
                unready.append((task.id, [b.id for b in task.blocked_by if not b.done]))
            await run(crowd, actor, Complete(task_id=task.id))
            done.add(task.id)

    started = time.monotonic()
    try:
        await asyncio.gather(*(agent(a) for a in agents))
    finally:
        await crowd.close()
    elapsed = time.monotonic() - started

    print(f"\n{TASKS} tasks drained by {AGENTS} agents in {elapsed:.1f} s")
    assert unready == [], "a task was claimed before its blockers were completed"
    assert len(claimed) == len(set(claimed)) == TASKS, f"{len(claimed)} claims in {elapsed:.1f}s"
    per_task = await sql(
        db,
        "SELECT entity_id, count(*) FROM audit_log WHERE action = 'claimed' GROUP BY entity_id "
        "HAVING count(*) <> 1",
    )
    assert per_task == []
    # The claim's entry follows the completion entry of each of its blockers.
    late = await sql(
        db,
        """
        SELECT d.task_id, d.blocker_id FROM task_dependencies d
        JOIN audit_log c ON c.entity_id = d.task_id AND c.action = 'claimed'
        JOIN audit_log b ON b.entity_id = d.blocker_id AND b.action = 'completed'
        WHERE c.id < b.id
        """,
    )
    assert late == []
    assert len(blockers) > TASKS // 2
    assert (await audit.verify(db)).ok

"""A team for the slow tests: an owner, a project, agents with API keys, open tasks to claim,
and the audit facts the tests hold the servers to (plain helpers, no pytest)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import text

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import WorkerType
from taskflow.core.schemas import AddMember, CreateHuman, CreateProject, CreateTask, RegisterAgent
from taskflow.core.services import projects, tasks, workers

PROJECT = "load"


@dataclass
class Team:
    owner: Actor
    keys: list[str]  # one API key per agent, agent i is @agent-<i>
    task_ids: list[int]


async def seed_team(db: Database, *, agents: int, open_tasks: int) -> Team:
    """Through the core services: @lead owns project `load`, `agents` agent members each with
    an API key, `open_tasks` unassigned tasks."""
    lead = await workers.create_human(db, CreateHuman(handle="@lead", name="Lead"))
    owner = Actor(worker_id=lead.id, handle=lead.handle, type=WorkerType.HUMAN)
    await projects.create_project(db, owner, CreateProject(slug=PROJECT, name="Load"))
    keys = []
    for i in range(agents):
        handle = f"@agent-{i:03d}"
        issued = await workers.register_agent(db, owner, RegisterAgent(handle=handle, name=handle))
        await projects.add_member(db, owner, PROJECT, AddMember(handle=handle))
        keys.append(issued.api_key)
    ids = []
    for i in range(open_tasks):
        created = await tasks.create_task(db, owner, CreateTask(project=PROJECT, title=f"t{i}"))
        ids.append(created.task.id)
    return Team(owner, keys, ids)


async def task_actions(db: Database) -> Counter[str]:
    """Audit entries of tasks, by action."""
    async with db.transaction() as session:
        rows = await session.execute(
            text("SELECT action, count(*) FROM audit_log WHERE entity_type = 'task' GROUP BY 1")
        )
        return Counter({action: n for action, n in rows})


async def claims_per_task(db: Database) -> Counter[int]:
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT entity_id, count(*) FROM audit_log WHERE entity_type = 'task' "
                "AND action = 'claimed' GROUP BY 1"
            )
        )
        return Counter({task_id: n for task_id, n in rows})


async def versions_without_entries(db: Database) -> list[int]:
    """Tasks whose version is not their number of audit entries (a change without its entry,
    or an entry without its change)."""
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT t.id FROM tasks t LEFT JOIN audit_log a "
                "ON a.entity_type = 'task' AND a.entity_id = t.id "
                "GROUP BY t.id, t.version HAVING t.version <> count(a.id)"
            )
        )
        return [r[0] for r in rows]


async def chain_verifies(db: Database) -> bool:
    result = await audit.verify(db)
    return result.ok

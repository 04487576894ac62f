"""The simulated team of the load and fault benches: agents and humans at work.

A lead owns one review-required project; agents (each with its own API key, made through the
core services) and humans (Better Auth users whose first request provisions them) are members.
Every worker speaks to a running `taskflow serve` through a `Speaker`, choosing REST or MCP
per call (about half each by default).

An agent's cycle: rework any of its tasks a reviewer sent back; claim the next open task; report
progress three times (each change based on the version the previous answer gave); add two
subtasks (one for itself, one left open for any agent to claim); start its own subtask, finish
it and ask for review; ask for review of the claimed task; read it back. A human lists the tasks
in review and approves most, rejects some with a reason; reviewers race for a task now and then.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._calls import Recorder, Speaker
from taskflow.core.actor import Actor
from taskflow.core.db import Database, upgrade
from taskflow.core.domain import AgentType, ApprovalPolicy, Priority, Role, WorkerType
from taskflow.core.schemas import (
    AddMember,
    CreateHuman,
    CreateProject,
    CreateTask,
    RegisterAgent,
)
from taskflow.core.services import projects, tasks, workers

_PRIORITIES = [Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.MEDIUM, Priority.LOW]
During = Callable[[Recorder, asyncio.Event], Awaitable[None]]


@dataclass
class Member:
    handle: str
    token: str
    kind: str  # "agent" or "human"


@dataclass
class Team:
    project: str
    lead: Actor
    agents: list[Member]
    humans: list[Member] = field(default_factory=list)


async def seed_team(url: str, *, project: str, agents: int, seed_tasks: int) -> Team:
    """Migrate; a lead who owns a review-required project; agents (members, one API key each)
    created through the core services; open tasks to claim."""
    db = Database.from_url(url, pool_size=4)
    try:
        await upgrade(db)
        lead_out = await workers.create_human(db, CreateHuman(handle="@lead", name="Team lead"))
        lead = Actor(worker_id=lead_out.id, handle=lead_out.handle, type=WorkerType.HUMAN)
        await projects.create_project(
            db,
            lead,
            CreateProject(
                slug=project, name="Load", approval_policy=ApprovalPolicy.REVIEW_REQUIRED
            ),
        )
        members = []
        for i in range(agents):
            handle = f"@agent-{i:03d}"
            issued = await workers.register_agent(
                db,
                lead,
                RegisterAgent(handle=handle, name=f"Agent {i}", agent_type=list(AgentType)[i % 4]),
            )
            await projects.add_member(db, lead, project, AddMember(handle=handle))
            members.append(Member(handle, issued.api_key, "agent"))
        await add_open_tasks(db, lead, project, seed_tasks)
        return Team(project=project, lead=lead, agents=members)
    finally:
        await db.close()


async def add_open_tasks(db: Database, lead: Actor, project: str, count: int) -> None:
    for i in range(count):
        cmd = CreateTask(
            project=project,
            title=f"seeded task {i}",
            priority=_PRIORITIES[i % len(_PRIORITIES)],
            tags=["seed"],
        )
        await tasks.create_task(db, lead, cmd)


def sign_in_humans(better_auth: Any, count: int) -> list[tuple[str, str]]:
    """(email, JWT) for `count` new Better Auth users."""
    out = []
    for i in range(1, count + 1):
        email = f"reviewer{i}-{uuid.uuid4().hex[:6]}@example.com"
        session = better_auth.sign_up(email, "correct-horse-battery", f"Reviewer {i}")
        out.append((email, better_auth.get_jwt(session)))
    return out


def provision(base_url: str, jwt: str) -> str:
    """The first request with a new JWT creates the human; returns the handle it got."""
    response = httpx.get(
        base_url + "/api/me", headers={"Authorization": f"Bearer {jwt}"}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["handle"])


async def add_members(url: str, team: Team, handles: Iterable[str], role: Role) -> None:
    db = Database.from_url(url, pool_size=2)
    try:
        for handle in handles:
            await projects.add_member(
                db, team.lead, team.project, AddMember(handle=handle, role=role)
            )
    finally:
        await db.close()


# ------------------------------------------------------------------ behaviour


class Worker:
    """What agents and humans share: a speaker, a seeded random source, a surface per call.

    With `idempotent`, every change carries a fresh idempotency key (`Idempotency-Key` on REST
    POSTs, `idempotency_key` on MCP tools), so it can be retried safely after an outage.
    """

    def __init__(
        self,
        me: Member,
        speaker: Speaker,
        project: str,
        rng: random.Random,
        *,
        mcp_share: float,
        idempotent: bool = False,
    ) -> None:
        self.me = me
        self.s = speaker
        self.project = project
        self.rng = rng
        self.mcp_share = mcp_share
        self.idempotent = idempotent

    def mcp_turn(self) -> bool:
        return self.rng.random() < self.mcp_share

    def _key(self) -> str | None:
        return uuid.uuid4().hex if self.idempotent else None

    async def _change(
        self,
        op: str,
        tool: str,
        tool_args: dict[str, Any],
        method: str,
        path: str,
        body: Any,
        version: int | None,
        audits: dict[str, int],
    ) -> Any:
        """One state change over MCP or REST, based on `version` when given; its answer."""
        key = self._key()
        if self.mcp_turn():
            args = dict(tool_args)
            if version is not None:
                args["expected_version"] = version
            if key:
                args["idempotency_key"] = key
            _, out = await self.s.mcp(op, tool, args, audits=audits)
            return out
        headers = {"Idempotency-Key": key} if key and method == "POST" else None
        _, out = await self.s.rest(
            op, method, path, json=body, version=version, headers=headers, audits=audits
        )
        return out

    async def claim(self) -> dict[str, Any] | None:
        path = f"/api/projects/{self.project}/claim"
        args = {"project": self.project}
        return await self._change(
            "claim", "claim_next_task", args, "POST", path, {}, None, {"claimed": 1}
        )

    async def _verb(
        self,
        op: str,
        tool: str,
        path: str,
        task_id: int,
        version: int | None,
        action: str,
        args: dict[str, Any] | None = None,
    ) -> int | None:
        """A workflow move based on `version`; the new version, or None if it was refused."""
        out = await self._change(
            op,
            tool,
            {"task_id": task_id, **(args or {})},
            "POST",
            f"/api/tasks/{task_id}/{path}",
            dict(args) if args else None,
            version,
            {action: 1},
        )
        return int(out["version"]) if out else None

    async def progress(self, task_id: int, percent: int, version: int | None) -> int | None:
        note = f"{percent}% done"
        out = await self._change(
            "progress",
            "update_progress",
            {"task_id": task_id, "percent": percent, "note": note},
            "PATCH",
            f"/api/tasks/{task_id}/progress",
            {"progress_percent": percent, "note": note},
            version,
            {"progressed": 1},
        )
        return int(out["version"]) if out else None

    async def start(self, task_id: int, version: int | None) -> int | None:
        return await self._verb("start", "start_task", "start", task_id, version, "started")

    async def request_review(self, task_id: int, version: int | None) -> int | None:
        return await self._verb(
            "request_review", "request_review", "review", task_id, version, "review_requested"
        )

    async def add_subtasks(self, task_id: int, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = await self._change(
            "add_subtasks",
            "manage_task",
            {"action": "add_subtasks", "task_id": task_id, "subtasks": specs},
            "POST",
            f"/api/tasks/{task_id}/subtasks",
            specs,
            None,
            {"created": len(specs), "subtask_added": 1},
        )
        if isinstance(out, dict):  # MCP answers {"action", "subtasks": [...]}, REST a list
            return list(out.get("subtasks") or [])
        return list(out or [])

    async def get_task(self, task_id: int) -> None:
        if self.mcp_turn():
            await self.s.mcp("get_task", "get_task", {"task_id": task_id})
        else:
            await self.s.rest("get_task", "GET", f"/api/tasks/{task_id}")

    async def list_tasks(self, op: str, **filters: Any) -> list[dict[str, Any]]:
        filters = {"project": self.project, **filters}
        if self.mcp_turn():
            _, out = await self.s.mcp(op, "list_tasks", filters)
        else:
            _, out = await self.s.rest(op, "GET", "/api/tasks", params=filters)
        return list(out["items"]) if out else []


class Agent(Worker):
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.cycle(stop)

    async def cycle(self, stop: asyncio.Event) -> None:
        # Tasks a reviewer sent back (or a cycle that broke off): finish them, ask again.
        for t in (
            await self.list_tasks("list_mine", assignee=self.me.handle, status="in_progress")
        )[:3]:
            if stop.is_set():
                return
            version = await self.progress(t["id"], 100, t["version"])
            if version is not None:
                await self.request_review(t["id"], version)
        if stop.is_set():
            return
        task = await self.claim()
        if task is None:
            await asyncio.sleep(0.25)  # nothing open (or refused): look again shortly
            return
        tid, version = int(task["id"]), int(task["version"])
        for percent in (25, 50, 75):
            version = await self.progress(tid, percent, version)  # type: ignore[assignment]
            if version is None or stop.is_set():
                return
        subs = await self.add_subtasks(
            tid,
            [
                {"title": f"part A of {tid}", "assignee": self.me.handle, "tags": ["sub"]},
                {"title": f"part B of {tid}", "tags": ["sub"]},
            ],
        )
        if subs and not stop.is_set():
            own = subs[0]
            sub_version = await self.start(int(own["id"]), int(own["version"]))
            if sub_version is not None:
                sub_version = await self.progress(int(own["id"]), 100, sub_version)
            if sub_version is not None:
                await self.request_review(int(own["id"]), sub_version)
        await self.request_review(tid, version)
        await self.get_task(tid)


class Human(Worker):
    """A reviewer: approves most tasks in review, rejects some (with a reason)."""

    def __init__(self, *args: Any, reject_share: float, lane: int, lanes: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.reject_share = reject_share
        self.lane, self.lanes = lane, lanes

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            items = await self.list_tasks("list_review", status="review", limit=50)
            # Each lane takes its share; now and then a task from any lane, so reviewers race.
            todo = [
                t for t in items if t["id"] % self.lanes == self.lane or self.rng.random() < 0.05
            ][:5]
            if not todo:
                await asyncio.sleep(0.3)
                continue
            for t in todo:
                if stop.is_set():
                    return
                if self.rng.random() < self.reject_share:
                    await self._verb(
                        "reject",
                        "reject_task",
                        "reject",
                        t["id"],
                        t["version"],
                        "rejected",
                        {"reason": "please add tests for the edge cases"},
                    )
                else:
                    await self._verb(
                        "approve",
                        "approve_task",
                        "approve",
                        t["id"],
                        t["version"],
                        "approved",
                        {"note": "looks good"},
                    )


@dataclass
class LoadRun:
    recorder: Recorder
    seconds: float
    speakers: list[Speaker]


async def run_team(
    team: Team,
    base_urls: dict[str, str],
    *,
    duration: float,
    max_ops: int | None,
    mcp_share: float,
    reject_share: float,
    human_lanes: int,
    timeout: float,  # noqa: ASYNC109 - the per-request client timeout, not this call's
    seed: int,
    idempotent: bool = False,
    recorder: Recorder | None = None,
    stop: asyncio.Event | None = None,
    during: During | None = None,
) -> LoadRun:
    """Run every agent and human until `duration` passes or `max_ops` calls were made (or
    `stop` is set). With several servers, workers are spread over them round-robin.
    `during(recorder)`, if given, runs alongside (the fault schedule)."""
    recorder = recorder or Recorder()
    stop = stop or asyncio.Event()
    names = list(base_urls)
    speakers: list[Speaker] = []
    workers_: list[Worker] = []
    rng = random.Random(seed)
    for i, member in enumerate(team.agents):
        server = names[i % len(names)]
        sp = Speaker(
            member.handle,
            server,
            base_urls[server],
            member.token,
            recorder,
            timeout=timeout,
            connections=2,
        )
        speakers.append(sp)
        workers_.append(
            Agent(
                member,
                sp,
                team.project,
                random.Random(rng.random()),
                mcp_share=mcp_share,
                idempotent=idempotent,
            )
        )
    lanes = max(1, len(team.humans) * human_lanes)
    for h, member in enumerate(team.humans):
        server = names[h % len(names)]
        sp = Speaker(
            member.handle,
            server,
            base_urls[server],
            member.token,
            recorder,
            timeout=timeout,
            connections=human_lanes,
        )
        speakers.append(sp)
        for lane in range(human_lanes):
            workers_.append(
                Human(
                    member,
                    sp,
                    team.project,
                    random.Random(rng.random()),
                    mcp_share=mcp_share,
                    idempotent=idempotent,
                    reject_share=reject_share,
                    lane=h * human_lanes + lane,
                    lanes=lanes,
                )
            )

    async def watch() -> None:
        end = time.perf_counter() + duration
        while not stop.is_set() and time.perf_counter() < end:
            if max_ops is not None and len(recorder.calls) >= max_ops:
                break
            await asyncio.sleep(0.05)
        stop.set()

    started = time.perf_counter()
    jobs = [asyncio.create_task(w.run(stop)) for w in workers_]  # type: ignore[attr-defined]
    extra = [asyncio.create_task(during(recorder, stop))] if during is not None else []
    await watch()
    await asyncio.gather(*jobs, *extra)
    seconds = time.perf_counter() - started
    for sp in speakers:
        await sp.aclose()
    return LoadRun(recorder, seconds, speakers)

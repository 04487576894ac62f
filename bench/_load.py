"""The simulated team of the load and fault benches, and the checks run on what it did.

Agents and humans speak to a running `taskflow serve` over real HTTP, mixing REST calls and MCP
tool calls (raw JSON-RPC POSTs to the stateless, JSON-response `/mcp` endpoint, as any HTTP MCP
client sends them). Every request carries its own `X-Request-ID`, which the server writes on
every audit entry the request produces; each call is recorded with its latency, its outcome
and the audit entries it must have written (by action). After the run, `audit_accounting`
compares those expectations with the audit log request by request, so a lost, duplicated or
half-written entry shows up by name, and `database_invariants` checks the tables themselves.

An agent's cycle: rework any of its tasks a reviewer sent back; claim the next open task; report
progress three times (each change based on the version the previous answer gave); add two
subtasks (one for itself, one left open for any agent to claim); start its own subtask, finish
it and ask for review; ask for review of the claimed task. A human lists the tasks in review and
approves most, rejects some with a reason; two humans race for the same tasks now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from bench._harness import percentile, plain_dsn
from taskflow.core import audit
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

MCP_PROTOCOL = "2025-11-25"
OK, REFUSED, UNAVAILABLE, SERVER_ERROR, NO_ANSWER = (
    "ok",
    "refused",
    "unavailable",
    "server_error",
    "no_answer",
)
_PRIORITIES = [Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.MEDIUM, Priority.LOW]


# ------------------------------------------------------------------ recording


@dataclass(slots=True)
class Call:
    """One request as its client saw it."""

    who: str
    op: str
    surface: str  # "rest" or "mcp"
    server: str
    request_id: str
    started: float  # seconds since the recorder started
    seconds: float
    http_status: int  # 0: no answer
    outcome: str
    code: str  # problem type / MCP error code; "" when ok
    detail: str
    audits: dict[str, int]  # audit entries by action the request writes if it succeeds
    shape_ok: bool = True  # for refusals: the documented shape (problem+json, Retry-After, ...)
    replayed: bool = False  # answered from an idempotency record: ran nothing, wrote nothing
    spec: tuple[Any, ...] = ()  # what was sent, so `Speaker.resend` can retry it

    @property
    def ended(self) -> float:
        return self.started + self.seconds


@dataclass
class Recorder:
    t0: float = field(default_factory=time.perf_counter)
    calls: list[Call] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0


class Speaker:
    """One worker's connection to one server: REST calls and MCP tool calls, each recorded."""

    def __init__(
        self,
        who: str,
        server: str,
        base_url: str,
        token: str | None,
        recorder: Recorder,
        *,
        timeout: float = 30.0,
        connections: int = 4,
    ) -> None:
        self.who = who
        self.server = server
        self.recorder = recorder
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections),
        )
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _record(self, op: str, surface: str, rid: str, t: float, **kw: Any) -> Call:
        call = Call(
            who=self.who,
            op=op,
            surface=surface,
            server=self.server,
            request_id=rid,
            started=t,
            seconds=self.recorder.now() - t,
            **kw,
        )
        self.recorder.calls.append(call)
        return call

    async def rest(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        version: int | None = None,
        headers: dict[str, str] | None = None,
        audits: dict[str, int] | None = None,
    ) -> tuple[Call, Any]:
        spec = ("rest", op, method, path, json, params, version, headers, audits)
        rid = f"{self.who[1:]}-{uuid.uuid4().hex[:12]}"
        sent = {"X-Request-ID": rid, **(headers or {})}
        if version is not None:
            sent["If-Match"] = f'"{version}"'
        t = self.recorder.now()
        try:
            response = await self.http.request(method, path, json=json, params=params, headers=sent)
        except httpx.HTTPError as exc:
            call = self._record(
                op, "rest", rid, t, http_status=0, outcome=NO_ANSWER, code=type(exc).__name__,
                detail=str(exc)[:200], audits=audits or {}, spec=spec,
            )  # fmt: skip
            return call, None
        status = response.status_code
        body: Any = None
        if response.content:
            with contextlib.suppress(ValueError):
                body = response.json()
        if status < 400:
            replayed = response.headers.get("idempotent-replayed") == "true"
            return self._record(
                op, "rest", rid, t, http_status=status, outcome=OK, code="", detail="",
                audits={} if replayed else audits or {}, replayed=replayed, spec=spec,
            ), body  # fmt: skip
        problem = body if isinstance(body, dict) else {}
        code = str(problem.get("type", "")).rsplit(":", 1)[-1]
        is_problem = response.headers.get("content-type", "").startswith(
            "application/problem+json"
        )
        if status == 503:
            outcome = UNAVAILABLE
            shape_ok = (
                is_problem and code == "unavailable" and response.headers.get("retry-after") == "5"
            )
        else:
            outcome = SERVER_ERROR if status >= 500 else REFUSED
            shape_ok = is_problem
        call = self._record(
            op, "rest", rid, t, http_status=status, outcome=outcome, code=code,
            detail=str(problem.get("detail", response.text[:200]))[:200], audits=audits or {},
            shape_ok=shape_ok, spec=spec,
        )  # fmt: skip
        return call, None

    async def mcp(
        self, op: str, tool: str, arguments: dict[str, Any], *, audits: dict[str, int] | None = None
    ) -> tuple[Call, Any]:
        """`tools/call` as a raw JSON-RPC POST; the answer's structuredContent when it worked."""
        spec = ("mcp", op, tool, arguments, audits)
        rid = f"{self.who[1:]}-{uuid.uuid4().hex[:12]}"
        message = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        headers = {
            "X-Request-ID": rid,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MCP_PROTOCOL,
        }
        t = self.recorder.now()
        try:
            response = await self.http.post("/mcp", json=message, headers=headers)
        except httpx.HTTPError as exc:
            call = self._record(
                op, "mcp", rid, t, http_status=0, outcome=NO_ANSWER, code=type(exc).__name__,
                detail=str(exc)[:200], audits=audits or {}, spec=spec,
            )  # fmt: skip
            return call, None
        status = response.status_code
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if status != 200 or not isinstance(body, dict):
            # The transport refused before any tool ran (auth could not be checked: 503).
            error = body if isinstance(body, dict) else {}
            if status == 503:
                outcome = UNAVAILABLE
                shape_ok = response.headers.get("retry-after") is not None
            else:
                outcome = SERVER_ERROR if status >= 500 else REFUSED
                shape_ok = status < 500
            call = self._record(
                op, "mcp", rid, t, http_status=status, outcome=outcome,
                code=str(error.get("error", status)),
                detail=str(error.get("error_description", response.text[:200]))[:200],
                audits=audits or {}, shape_ok=shape_ok, spec=spec,
            )  # fmt: skip
            return call, None
        if "error" in body:  # a JSON-RPC protocol error: -32603 is the server failing
            err = body["error"]
            outcome = SERVER_ERROR if err.get("code") == -32603 else REFUSED
            call = self._record(
                op, "mcp", rid, t, http_status=status, outcome=outcome,
                code=str(err.get("code")), detail=str(err.get("message"))[:200],
                audits=audits or {}, shape_ok=outcome == REFUSED, spec=spec,
            )  # fmt: skip
            return call, None
        result = body.get("result") or {}
        if result.get("isError"):
            meta = (result.get("_meta") or {}).get("taskflow/error") or {}
            code = str(meta.get("code", ""))
            text = " ".join(c.get("text", "") for c in result.get("content", []))
            outcome = UNAVAILABLE if code == "unavailable" else REFUSED
            shape_ok = bool(code) and (outcome != UNAVAILABLE or "database" in text)
            if not code and "Error executing tool" in text:  # an unexpected exception: a bug
                outcome, shape_ok = SERVER_ERROR, False
            call = self._record(
                op, "mcp", rid, t, http_status=status, outcome=outcome, code=code,
                detail=text[:200], audits=audits or {}, shape_ok=shape_ok, spec=spec,
            )  # fmt: skip
            return call, None
        replayed = bool((result.get("_meta") or {}).get("taskflow/replayed"))
        return self._record(
            op, "mcp", rid, t, http_status=status, outcome=OK, code="", detail="",
            audits={} if replayed else audits or {}, replayed=replayed, spec=spec,
        ), result.get("structuredContent")  # fmt: skip

    async def resend(self, call: Call, op: str | None = None) -> tuple[Call, Any]:
        """Send a recorded request again, identically (same idempotency key, if it had one)."""
        if call.spec[0] == "rest":
            _, o, method, path, json, params, version, headers, audits = call.spec
            return await self.rest(
                op or o, method, path, json=json, params=params, version=version,
                headers=headers, audits=audits,
            )  # fmt: skip
        _, o, tool, arguments, audits = call.spec
        return await self.mcp(op or o, tool, arguments, audits=audits)


# ------------------------------------------------------------------ the team


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
                RegisterAgent(
                    handle=handle, name=f"Agent {i}", agent_type=list(AgentType)[i % 4]
                ),
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
            await projects.add_member(db, team.lead, team.project, AddMember(handle=handle, role=role))
    finally:
        await db.close()


# ------------------------------------------------------------------ behaviour


class Worker:
    """What agents and humans share: a speaker, a seeded random source, a surface per call.

    With `idempotent`, every change carries a fresh idempotency key (`Idempotency-Key` on REST
    POSTs, `idempotency_key` on MCP tools), so it can be retried safely after an outage.
    """

    def __init__(self, me: Member, speaker: Speaker, project: str, rng: random.Random, *,
                 mcp_share: float, idempotent: bool = False) -> None:  # fmt: skip
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
        self, op: str, tool: str, tool_args: dict[str, Any], method: str, path: str,
        body: Any, version: int | None, audits: dict[str, int],
    ) -> Any:  # fmt: skip
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
        self, op: str, tool: str, path: str, task_id: int, version: int | None, action: str,
        args: dict[str, Any] | None = None,
    ) -> int | None:  # fmt: skip
        """A workflow move based on `version`; the new version, or None if it was refused."""
        out = await self._change(
            op, tool, {"task_id": task_id, **(args or {})}, "POST",
            f"/api/tasks/{task_id}/{path}", dict(args) if args else None, version, {action: 1},
        )  # fmt: skip
        return int(out["version"]) if out else None

    async def progress(self, task_id: int, percent: int, version: int | None) -> int | None:
        note = f"{percent}% done"
        out = await self._change(
            "progress", "update_progress", {"task_id": task_id, "percent": percent, "note": note},
            "PATCH", f"/api/tasks/{task_id}/progress", {"progress_percent": percent, "note": note},
            version, {"progressed": 1},
        )  # fmt: skip
        return int(out["version"]) if out else None

    async def start(self, task_id: int, version: int | None) -> int | None:
        return await self._verb("start", "start_task", "start", task_id, version, "started")

    async def request_review(self, task_id: int, version: int | None) -> int | None:
        return await self._verb(
            "request_review", "request_review", "review", task_id, version, "review_requested"
        )

    async def add_subtasks(self, task_id: int, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = await self._change(
            "add_subtasks", "manage_task",
            {"action": "add_subtasks", "task_id": task_id, "subtasks": specs},
            "POST", f"/api/tasks/{task_id}/subtasks", specs, None,
            {"created": len(specs), "subtask_added": 1},
        )  # fmt: skip
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
        for t in (await self.list_tasks("list_mine", assignee=self.me.handle, status="in_progress"))[:3]:  # noqa: E501
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
                        "reject", "reject_task", "reject", t["id"], t["version"], "rejected",
                        {"reason": "please add tests for the edge cases"},
                    )  # fmt: skip
                else:
                    await self._verb(
                        "approve", "approve_task", "approve", t["id"], t["version"], "approved",
                        {"note": "looks good"},
                    )  # fmt: skip


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
    timeout: float,
    seed: int,
    idempotent: bool = False,
    recorder: Recorder | None = None,
    stop: asyncio.Event | None = None,
    during: Any = None,
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
        sp = Speaker(member.handle, server, base_urls[server], member.token, recorder,
                     timeout=timeout, connections=2)  # fmt: skip
        speakers.append(sp)
        workers_.append(
            Agent(member, sp, team.project, random.Random(rng.random()), mcp_share=mcp_share,
                  idempotent=idempotent)  # fmt: skip
        )
    lanes = max(1, len(team.humans) * human_lanes)
    for h, member in enumerate(team.humans):
        server = names[h % len(names)]
        sp = Speaker(member.handle, server, base_urls[server], member.token, recorder,
                     timeout=timeout, connections=human_lanes)  # fmt: skip
        speakers.append(sp)
        for lane in range(human_lanes):
            workers_.append(
                Human(
                    member, sp, team.project, random.Random(rng.random()), mcp_share=mcp_share,
                    idempotent=idempotent, reject_share=reject_share, lane=h * human_lanes + lane,
                    lanes=lanes,
                )  # fmt: skip
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


# ------------------------------------------------------------------ reports


def latency_rows(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """Per (operation, surface): counts by outcome and p50/p95/p99 over answered calls."""
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for c in calls:
        groups[(c.op, c.surface)].append(c)
        groups[("ALL", "both")].append(c)
    rows = []
    for (op, surface), cs in sorted(groups.items(), key=lambda kv: (kv[0][0] == "ALL", kv[0])):
        answered = [c.seconds * 1000 for c in cs if c.outcome != NO_ANSWER]
        outcomes = Counter(c.outcome for c in cs)
        rows.append(
            {
                "op": op,
                "surface": surface,
                "calls": len(cs),
                "ok": outcomes[OK],
                "refused": outcomes[REFUSED],
                "unavailable": outcomes[UNAVAILABLE],
                "server_error": outcomes[SERVER_ERROR],
                "no_answer": outcomes[NO_ANSWER],
                "p50_ms": round(percentile(answered, 50), 1),
                "p95_ms": round(percentile(answered, 95), 1),
                "p99_ms": round(percentile(answered, 99), 1),
                "max_ms": round(max(answered, default=0.0), 1),
            }
        )
    return rows


def print_latency_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'operation':16} {'via':5} {'calls':>6} {'ok':>6} {'4xx':>5} {'503':>5} {'5xx':>4} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['op']:16} {r['surface']:5} {r['calls']:6} {r['ok']:6} {r['refused']:5} "
            f"{r['unavailable']:5} {r['server_error']:4} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['p99_ms']:8.1f}"
        )


def refusal_codes(calls: Iterable[Call]) -> dict[str, int]:
    return dict(Counter(f"{c.op}: {c.code}" for c in calls if c.outcome == REFUSED).most_common())


# ------------------------------------------------------------------ checks against the database


async def last_audit_id(url: str) -> int:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))
    finally:
        await conn.close()


@dataclass
class Accounting:
    expected_by_action: dict[str, int]
    actual_by_action: dict[str, int]
    lost: int  # entries a successful request should have written and did not
    duplicated: int  # entries beyond what a successful request writes
    refused_wrote: int  # entries written by requests that were refused
    unexplained: int  # entries no recorded request accounts for
    partial: int  # failed requests whose entries are neither none nor all of them
    committed_without_answer: int  # requests that failed for the client but did commit (whole)
    examples: list[str]


async def audit_accounting(url: str, after_id: int, calls: list[Call]) -> Accounting:
    """Compare, per request id and action, the audit entries written after `after_id` with the
    entries each recorded request must have written: all of them if it succeeded, none if it
    was refused, and either none or all (never part) if its answer was lost to an outage."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT request_id, action, count(*) AS n FROM audit_log WHERE id > $1 "
            "GROUP BY request_id, action",
            after_id,
        )
    finally:
        await conn.close()
    actual: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        actual[r["request_id"] or ""][r["action"]] += r["n"]
    by_id = {c.request_id: c for c in calls}
    lost = duplicated = refused_wrote = unexplained = partial = committed = 0
    examples: list[str] = []
    expected_total: Counter[str] = Counter()
    actual_total: Counter[str] = Counter()
    for rid, got in actual.items():
        actual_total.update(got)
        if rid not in by_id:
            unexplained += sum(got.values())
            examples.append(f"unexplained entries {dict(got)} with request id {rid!r}")
    for c in calls:
        want = Counter(c.audits)
        got = actual.get(c.request_id, Counter())
        if c.outcome == OK:
            expected_total.update(want)
            lost += sum((want - got).values())
            duplicated += sum((got - want).values())
            if want != got:
                examples.append(f"{c.op} via {c.surface} ({c.request_id}): want {dict(want)}, got {dict(got)}")  # noqa: E501
        elif c.outcome == REFUSED:
            refused_wrote += sum(got.values())
            if got:
                examples.append(f"refused {c.op} ({c.request_id}) wrote {dict(got)}")
        elif got:  # unavailable / no answer: all or nothing
            if got == want:
                committed += 1
                expected_total.update(want)
            else:
                partial += 1
                examples.append(f"{c.outcome} {c.op} ({c.request_id}): want {dict(want)} or nothing, got {dict(got)}")  # noqa: E501
    return Accounting(
        dict(sorted(expected_total.items())),
        dict(sorted(actual_total.items())),
        lost,
        duplicated,
        refused_wrote,
        unexplained,
        partial,
        committed,
        examples[:10],
    )


@dataclass
class DbInvariants:
    tasks: int
    audit_entries: int
    versions_without_entry: int  # tasks whose version count disagrees with their audit entries
    claimed_twice: int
    verify_ok: bool
    verify_entries: int
    verify_chains: int
    verify_seconds: float
    examples: list[str]


_VERSION_VS_AUDIT = """
SELECT t.id, t.version, count(a.id) AS entries
FROM tasks t
LEFT JOIN audit_log a ON a.entity_type = 'task' AND a.entity_id = t.id
                     AND a.action <> 'subtask_added'
GROUP BY t.id, t.version
HAVING t.version <> count(a.id)
"""


async def database_invariants(url: str) -> DbInvariants:
    """Every task change has its audit entry (a task's version counts its changes, and each
    change writes one entry on the task; `subtask_added` lands on the parent without changing
    it), no task was claimed twice, and the hash chains verify (the core's `audit.verify`)."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        mismatched = await conn.fetch(_VERSION_VS_AUDIT)
        twice = await conn.fetch(
            "SELECT entity_id, count(*) FROM audit_log WHERE action = 'claimed' "
            "GROUP BY entity_id HAVING count(*) > 1"
        )
        n_tasks = int(await conn.fetchval("SELECT count(*) FROM tasks"))
        n_audit = int(await conn.fetchval("SELECT count(*) FROM audit_log"))
    finally:
        await conn.close()
    db = Database.from_url(url, pool_size=2)
    try:
        t = time.perf_counter()
        result = await audit.verify(db)
        verify_seconds = time.perf_counter() - t
    finally:
        await db.close()
    examples = [f"task {r['id']}: version {r['version']}, {r['entries']} entries" for r in mismatched[:5]]  # noqa: E501
    examples += [f"task {r['entity_id']} claimed {r['count']} times" for r in twice[:5]]
    return DbInvariants(
        tasks=n_tasks,
        audit_entries=n_audit,
        versions_without_entry=len(mismatched),
        claimed_twice=len(twice),
        verify_ok=bool(result.ok),
        verify_entries=int(result.entries_checked),
        verify_chains=int(result.chains_checked),
        verify_seconds=round(verify_seconds, 3),
        examples=examples,
    )


async def claims_per_task(url: str, after_id: int) -> Counter[int]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT entity_id FROM audit_log WHERE action = 'claimed' AND id > $1", after_id
        )
    finally:
        await conn.close()
    return Counter(int(r["entity_id"]) for r in rows)

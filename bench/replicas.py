"""Several replicas: two `taskflow serve` processes on one database, clients alternating between
them, see one consistent state. A bench, not a test (tests/prod/test_prod_quick.py runs --quick).

Two real `taskflow serve` subprocesses (replicas A and B, different ports) boot at the same time
on an empty database (both migrate at startup; an advisory lock serialises them). An agent talks
MCP through the official Python SDK client (`mcp.Client` over Streamable HTTP, API key) and a
human talks REST (httpx, Better Auth JWT), each with a client per replica. Asserted, as
`INVARIANT` lines:

- both replicas boot on the empty database together; the schema ends at head, migrated once;
- created on A, read on B: the same task; updated on B with the version read on A: A reads the
  update; a write on A still based on the older version is refused (REST 412 `stale-version`,
  MCP isError `stale-version`) and changes nothing;
- an idempotency key used on A and retried on B (REST `Idempotency-Key`, MCP `idempotency_key`)
  returns the first answer (marked replayed) and creates one task, not two;
- N rounds alternating replica and surface: every write is based on the version the other
  replica returned, and the next read on the other replica sees it (no stale read, no lost
  update);
- concurrent claims spread over both replicas and both surfaces: every open task is claimed
  exactly once, the rest get "nothing to claim";
- the audit log has exactly one entry per successful change, by action, and the chains verify.

    uv run python bench/replicas.py                  # 1,000 alternating rounds
    uv run python bench/replicas.py --quick          # seconds (CI)
    uv run python bench/replicas.py --database-url postgresql://user:pw@host/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench._harness import (
    Checks,
    better_auth,
    finish,
    fresh_database,
    machine,
    percentile,
    plain_dsn,
    postgres,
    serve,
    server_version,
    wait_ready,
)
from bench._team import provision
from bench._verdicts import last_audit_id
from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database, head_revision
from taskflow.core.domain import Role, WorkerType
from taskflow.core.schemas import (
    AddMember,
    CreateHuman,
    CreateProject,
    CreateTask,
    RegisterAgent,
)
from taskflow.core.services import projects, tasks, workers

PROJECT = "shared"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=1000, help="alternating write/read rounds")
    p.add_argument("--claims", type=int, default=40, help="open tasks claimed concurrently")
    p.add_argument("--database-url", default=None, help="a server to create the database on")
    p.add_argument("--quick", action="store_true", help="10 rounds: proves it still works")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.claims = min(args.rounds, 10), min(args.claims, 6)
    return args


# ------------------------------------------------------------------ clients


@dataclass
class Timings:
    seconds: dict[tuple[str, str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )

    @contextlib.asynccontextmanager
    async def time(self, op: str, surface: str, replica: str) -> AsyncIterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[(op, surface, replica)].append(time.perf_counter() - t)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for (op, surface, replica), xs in sorted(self.seconds.items()):
            ms = [x * 1000 for x in xs]
            out.append(
                {
                    "op": op,
                    "surface": surface,
                    "replica": replica,
                    "calls": len(ms),
                    "p50_ms": round(percentile(ms, 50), 1),
                    "p95_ms": round(percentile(ms, 95), 1),
                }
            )
        return out


@dataclass
class Replica:
    """One replica as the two clients see it: REST (the human) and MCP (the agent)."""

    name: str
    rest: httpx.AsyncClient
    mcp: Client
    timings: Timings
    answers: Counter[str] = field(default_factory=Counter)  # "ok" / refusal codes / 5xx

    async def rest_call(self, op: str, method: str, path: str, **kw: Any) -> httpx.Response:
        async with self.timings.time(op, "rest", self.name):
            response = await self.rest.request(method, path, **kw)
        self.answers["5xx" if response.status_code >= 500 else "ok"] += 1
        return response

    async def tool(self, op: str, name: str, arguments: dict[str, Any]) -> Any:
        async with self.timings.time(op, "mcp", self.name):
            result = await self.mcp.call_tool(name, arguments)
        code = _mcp_code(result)
        self.answers["5xx" if code in ("internal-error", "crash") else "ok"] += 1
        return result

    async def read(self, surface: str, task_id: int) -> tuple[int, str]:
        """(version, title) of a task, through one surface."""
        if surface == "rest":
            r = await self.rest_call("read", "GET", f"/api/tasks/{task_id}")
            r.raise_for_status()
            task = r.json()["task"]
            assert r.headers["etag"] == f'"{task["version"]}"'
        else:
            result = await self.tool("read", "get_task", {"task_id": task_id})
            assert not result.is_error, _text(result)
            task = result.structured_content["task"]
        return int(task["version"]), str(task["title"])

    async def edit(
        self, surface: str, task_id: int, title: str, version: int
    ) -> tuple[bool, str, int | None]:
        """Rename a task based on `version`: (applied, refusal code, new version)."""
        if surface == "rest":
            r = await self.rest_call(
                "edit",
                "PUT",
                f"/api/tasks/{task_id}",
                json={"title": title},
                headers={"If-Match": f'"{version}"'},
            )
            if r.status_code == 200:
                return True, "", int(r.json()["version"])
            return False, str(r.json().get("type", r.status_code)).rsplit(":", 1)[-1], None
        result = await self.tool(
            "edit", "update_task", {"task_id": task_id, "title": title, "expected_version": version}
        )
        if result.is_error:
            return False, _mcp_code(result), None
        return True, "", int(result.structured_content["version"])


def _mcp_code(result: Any) -> str:
    if not result.is_error:
        return ""
    meta = (result.meta or {}).get("taskflow/error") or {}
    return str(meta.get("code") or "crash")


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@contextlib.asynccontextmanager
async def connect(
    urls: dict[str, str], agent_key: str, human_jwt: str, timings: Timings
) -> AsyncIterator[dict[str, Replica]]:
    async with contextlib.AsyncExitStack() as stack:
        replicas = {}
        for name, base in urls.items():
            hc = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers={"Authorization": f"Bearer {agent_key}"},
                    timeout=httpx2.Timeout(30, read=60),
                )
            )
            mcp = await stack.enter_async_context(
                Client(streamable_http_client(base + "/mcp", http_client=hc))
            )
            rest = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base, timeout=30, headers={"Authorization": f"Bearer {human_jwt}"}
                )
            )
            replicas[name] = Replica(name, rest, mcp, timings)
        yield replicas


# ------------------------------------------------------------------ setup


@dataclass
class Seeded:
    lead: Actor
    agent_handle: str
    agent_key: str


async def seed(url: str) -> Seeded:
    db = Database.from_url(url, pool_size=2)
    try:
        lead_out = await workers.create_human(db, CreateHuman(handle="@lead", name="Lead"))
        lead = Actor(worker_id=lead_out.id, handle=lead_out.handle, type=WorkerType.HUMAN)
        await projects.create_project(db, lead, CreateProject(slug=PROJECT, name="Shared"))
        issued = await workers.register_agent(
            db, lead, RegisterAgent(handle="@replica-bot", name="Replica bot")
        )
        await projects.add_member(db, lead, PROJECT, AddMember(handle="@replica-bot"))
        return Seeded(lead, "@replica-bot", issued.api_key)
    finally:
        await db.close()


async def add_member(url: str, lead: Actor, handle: str) -> None:
    db = Database.from_url(url, pool_size=1)
    try:
        await projects.add_member(db, lead, PROJECT, AddMember(handle=handle, role=Role.MEMBER))
    finally:
        await db.close()


async def open_tasks(url: str, lead: Actor, count: int) -> None:
    db = Database.from_url(url, pool_size=1)
    try:
        for i in range(count):
            await tasks.create_task(db, lead, CreateTask(project=PROJECT, title=f"open {i}"))
    finally:
        await db.close()


async def query(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# ------------------------------------------------------------------ the scenario


@dataclass
class Expect:
    """Audit entries the successful changes must have written, by action."""

    actions: Counter[str] = field(default_factory=Counter)


async def consistency(rs: dict[str, Replica], url: str, checks: Checks, ex: Expect) -> None:
    a, b = rs["A"], rs["B"]
    r = await a.rest_call(
        "create", "POST", f"/api/projects/{PROJECT}/tasks", json={"title": "made on A"}
    )
    ex.actions["created"] += r.status_code == 201
    tid = int(r.json()["task"]["id"])
    version_b, title_b = await b.read("mcp", tid)
    checks.check(
        "created on A (REST), read on B (MCP)",
        (version_b, title_b) == (1, "made on A"),
        f"task {tid}: version {version_b}, {title_b!r}",
    )
    applied, _, new_version = await b.edit("mcp", tid, "renamed on B", version_b)
    ex.actions["updated"] += applied
    version_a, title_a = await a.read("rest", tid)
    checks.check(
        "updated on B with A's version, read on A",
        applied and (version_a, title_a) == (2, "renamed on B") and new_version == 2,
        f"version {version_a}, {title_a!r}",
    )
    entries_before = await query(url, "SELECT count(*) FROM audit_log WHERE task_id = $1", tid)
    rest_applied, rest_code, _ = await a.edit("rest", tid, "stale on A", 1)
    mcp_applied, mcp_code, _ = await a.edit("mcp", tid, "stale on A", 1)
    version_after, title_after = await b.read("rest", tid)
    entries_after = await query(url, "SELECT count(*) FROM audit_log WHERE task_id = $1", tid)
    checks.check(
        "stale write on A refused (REST 412, MCP stale-version), nothing changed",
        not rest_applied
        and rest_code == "stale-version"
        and not mcp_applied
        and mcp_code == "stale-version"
        and (version_after, title_after) == (2, "renamed on B")
        and entries_before[0][0] == entries_after[0][0],
        f"REST {rest_code}, MCP {mcp_code}; task still version {version_after}",
    )


async def idempotency(rs: dict[str, Replica], url: str, checks: Checks, ex: Expect) -> None:
    a, b = rs["A"], rs["B"]
    key, title = uuid.uuid4().hex, f"once via REST {uuid.uuid4().hex[:6]}"
    path = f"/api/projects/{PROJECT}/tasks"
    first = await a.rest_call(
        "create", "POST", path, json={"title": title}, headers={"Idempotency-Key": key}
    )
    again = await b.rest_call(
        "create", "POST", path, json={"title": title}, headers={"Idempotency-Key": key}
    )
    ex.actions["created"] += first.status_code == 201
    made = await query(url, "SELECT count(*) FROM tasks WHERE title = $1", title)
    checks.check(
        "REST Idempotency-Key on A, retried on B: first answer replayed, one task",
        first.status_code == again.status_code == 201
        and first.json() == again.json()
        and again.headers.get("idempotent-replayed") == "true"
        and made[0][0] == 1,
        f"{first.status_code}/{again.status_code}, replayed="
        f"{again.headers.get('idempotent-replayed')}, {made[0][0]} task(s)",
    )
    key, title = uuid.uuid4().hex, f"once via MCP {uuid.uuid4().hex[:6]}"
    args = {"project": PROJECT, "title": title, "idempotency_key": key}
    one = await b.tool("create", "create_task", args)
    two = await a.tool("create", "create_task", args)
    ex.actions["created"] += not one.is_error
    made = await query(url, "SELECT count(*) FROM tasks WHERE title = $1", title)
    replayed = bool((two.meta or {}).get("taskflow/replayed"))
    checks.check(
        "MCP idempotency_key on B, retried on A: first answer replayed, one task",
        not one.is_error
        and not two.is_error
        and one.structured_content == two.structured_content
        and replayed
        and made[0][0] == 1,
        f"replayed={replayed}, {made[0][0]} task(s)",
    )


async def alternate(rs: dict[str, Replica], rounds: int, checks: Checks, ex: Expect) -> None:
    """Each round writes on one replica through one surface, based on the version the other
    replica just returned, then reads on the other replica through the other surface."""
    r = await rs["A"].rest_call(
        "create", "POST", f"/api/projects/{PROJECT}/tasks", json={"title": "round 0"}
    )
    ex.actions["created"] += 1
    tid = int(r.json()["task"]["id"])
    version, stale_reads, refused = 1, 0, Counter[str]()
    for i in range(1, rounds + 1):
        surface = ("rest", "mcp")[i % 2]
        writer, reader = (rs["A"], rs["B"]) if (i // 2) % 2 else (rs["B"], rs["A"])
        applied, code, new_version = await writer.edit(surface, tid, f"round {i}", version)
        if not applied:
            refused[code] += 1
            continue
        ex.actions["updated"] += 1
        other = "mcp" if surface == "rest" else "rest"
        seen_version, seen_title = await reader.read(other, tid)
        if (seen_version, seen_title) != (new_version, f"round {i}"):
            stale_reads += 1
        version = seen_version
    checks.check(
        f"{rounds} alternating rounds: every write applied and seen by the other replica",
        stale_reads == 0 and not refused and version == rounds + 1,
        f"{stale_reads} stale reads, refusals {dict(refused)}, final version {version}",
    )


async def claims(
    rs: dict[str, Replica], url: str, count: int, checks: Checks, ex: Expect, lead: Actor
) -> None:
    await open_tasks(url, lead, count)
    rows = await query(
        url, "SELECT count(*) FROM tasks WHERE status = 'pending' AND assignee_id IS NULL"
    )
    count = int(rows[0][0])  # the tasks made by the earlier steps are open too

    async def claim(i: int) -> tuple[str, int | None]:
        replica = rs["A"] if i % 2 else rs["B"]
        if (i // 2) % 2:
            r = await replica.rest_call("claim", "POST", f"/api/projects/{PROJECT}/claim", json={})
            return str(r.status_code), int(r.json()["id"]) if r.status_code == 200 else None
        result = await replica.tool("claim", "claim_next_task", {"project": PROJECT})
        if result.is_error:
            return _mcp_code(result), None
        return "200", int(result.structured_content["id"])

    outcomes = await asyncio.gather(*(claim(i) for i in range(2 * count)))
    won = [tid for _, tid in outcomes if tid is not None]
    codes = Counter(code for code, _ in outcomes)
    ex.actions["claimed"] += len(won)
    checks.check(
        f"{2 * count} concurrent claims over both replicas: each open task claimed once",
        len(won) == count == len(set(won)) and all(c in ("200", "404", "not-found") for c in codes),
        f"{len(won)} claimed ({len(set(won))} distinct) of {count}; answers {dict(codes)}",
    )


async def scenario(
    args: argparse.Namespace,
    urls: dict[str, str],
    url: str,
    seeded: Seeded,
    human_jwt: str,
    checks: Checks,
) -> Timings:
    timings, ex = Timings(), Expect()
    baseline = await last_audit_id(url)
    async with connect(urls, seeded.agent_key, human_jwt, timings) as rs:
        await consistency(rs, url, checks, ex)
        await idempotency(rs, url, checks, ex)
        await alternate(rs, args.rounds, checks, ex)
        await claims(rs, url, args.claims, checks, ex, seeded.lead)
        fives = sum(r.answers["5xx"] for r in rs.values())
        calls = sum(sum(r.answers.values()) for r in rs.values())
    checks.check("zero 5xx", fives == 0, f"{fives} of {calls} calls")
    rows = await query(
        url,
        "SELECT action, via, count(*) AS n FROM audit_log WHERE id > $1 "
        "AND entity_type = 'task' GROUP BY action, via",
        baseline,
    )
    written = Counter[str]()
    vias = Counter[str]()
    for row in rows:
        written[row["action"]] += row["n"]
        vias[row["via"]] += row["n"]
    checks.check(
        "audit entries equal successful changes, per action",
        written == ex.actions + Counter(created=args.claims),  # the open tasks, via core
        f"written {dict(written)} (by surface {dict(vias)}); changes {dict(ex.actions)} "
        f"+ {args.claims} tasks seeded",
    )
    db = Database.from_url(url, pool_size=1)
    try:
        result = await audit.verify(db)
    finally:
        await db.close()
    checks.check(
        "audit chain verifies",
        result.ok,
        f"{result.entries_checked} entries, {result.chains_checked} chains",
    )
    return timings


async def _boot_check(url: str) -> tuple[str | None, int]:
    rows = await query(url, "SELECT version_num FROM alembic_version")
    return (rows[0][0] if rows else None), len(rows)


def run(args: argparse.Namespace) -> tuple[Checks, dict[str, Any]]:
    checks = Checks()
    with (
        postgres(args.database_url) as (server_url, embedded),
        fresh_database(server_url, "tf_replicas") as url,
        better_auth() as auth,
        contextlib.ExitStack() as stack,
    ):
        t = time.perf_counter()
        servers = {
            name: stack.enter_context(
                serve(f"replica-{name}", url, auth_server_url=auth.base_url, wait=False)
            )
            for name in ("A", "B")
        }
        for server in servers.values():
            wait_ready(server)
        boot = time.perf_counter() - t
        revision, rows = asyncio.run(_boot_check(url))
        checks.check(
            "two replicas boot together on an empty database",
            revision == head_revision() and rows == 1,
            f"both ready in {boot:.1f} s; schema at {revision}",
        )
        seeded = asyncio.run(seed(url))
        human = _sign_in(auth)
        handle = provision(servers["A"].base_url, human)
        asyncio.run(add_member(url, seeded.lead, handle))
        urls = {name: s.base_url for name, s in servers.items()}
        t = time.perf_counter()
        timings = asyncio.run(scenario(args, urls, url, seeded, human, checks))
        seconds = time.perf_counter() - t
        tracebacks = sum(s.tracebacks() for s in servers.values())
        database = "embedded PostgreSQL (pgserver)" if embedded else "--database-url"
        database += " " + asyncio.run(server_version(url))
    checks.check("no tracebacks in the replicas' logs", tracebacks == 0, f"{tracebacks}")
    rows = timings.rows()
    print()
    print(f"{'operation':10} {'via':5} {'replica':7} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for r in rows:
        print(
            f"{r['op']:10} {r['surface']:5} {r['replica']:7} {r['calls']:6} "
            f"{r['p50_ms']:8.1f} {r['p95_ms']:8.1f}"
        )
    print(f"scenario took {seconds:.1f} s")
    return checks, {
        "machine": machine(database),
        "command": " ".join(["uv run python bench/replicas.py", *sys.argv[1:]]),
        "args": vars(args),
        "boot_seconds": round(boot, 2),
        "scenario_seconds": round(seconds, 2),
        "latency": rows,
        "server_tracebacks": tracebacks,
        "invariants": checks.results,
    }


def _sign_in(auth: Any) -> str:
    session = auth.sign_up(f"ana-{uuid.uuid4().hex[:6]}@example.com", "correct-horse-9", "Ana")
    return str(auth.get_jwt(session))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks, result = run(args)
    return finish("replicas", args, checks, result)


if __name__ == "__main__":
    sys.exit(main())

"""How close does `POST /api/projects/{pid}/tasks` get to a bare endpoint? A bench, not a test.

Two servers, each a real uvicorn (one worker) on loopback, same database, same run:
- taskflow: `uvicorn --factory taskflow.server:factory` (the app `taskflow serve` runs), called
  with an agent API key: authentication, validation, membership check, the task INSERT and its
  hash-chained audit INSERT in one transaction, the subtree read back, JSON out;
- bare: a Starlette endpoint on an asyncpg pool doing the same two INSERTs (the task row and the
  same audit-append statement) in one transaction, with no auth and no validation: the ceiling.
Both get the same number of requests at the same concurrency from one httpx client, in alternating
rounds; the table shows the median round, the ratio is the median of the per-round ratios. Then
`GET /api/tasks/{id}` on a task with 1,000 descendants (one recursive query, 1,001 nodes of JSON).

    uv run python bench/rest_tasks.py [--requests 400] [--concurrency 16] [--rounds 3]

With TASKFLOW_BENCH_DATABASE_URL unset, an embedded PostgreSQL is started in a temp directory.
Prints a table and writes bench/results/rest_tasks.json. Target: taskflow/bare >= 0.6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.http.live, which starts uvicorn the way tests do

from bench._harness import postgres, write_result  # noqa: E402
from taskflow.core.actor import Actor  # noqa: E402
from taskflow.core.db import Database, to_async_url, upgrade  # noqa: E402
from taskflow.core.domain import Role, WorkerType  # noqa: E402
from taskflow.core.schemas import (  # noqa: E402
    AddMember,
    CreateHuman,
    CreateProject,
    CreateTask,
    RegisterAgent,
    SubtaskSpec,
)
from taskflow.core.services import projects, tasks, workers  # noqa: E402

DATABASE_ENV = "TASKFLOW_BENCH_DATABASE_URL"
BARE_DSN_ENV = "TASKFLOW_BENCH_BARE_DSN"
BARE_POOL = 20  # the taskflow engine's pool_size 10 + max_overflow 10

# ------------------------------------------------------------------ the bare endpoint

_TASK_INSERT = """
INSERT INTO tasks (project_id, title, description, priority, tags, created_by_id)
VALUES ($1, $2, '', 'medium', '{}', $3) RETURNING id
"""
# The same append the core's audit.record runs: bump the entity's chain head, insert the entry.
_AUDIT_APPEND = """
WITH head AS (
    INSERT INTO audit_heads AS h (entity_type, entity_id, seq, head_hash, prev_hash)
    VALUES ('task', $1, 1, sha256($5::bytea || $6::bytea), $5::bytea)
    ON CONFLICT (entity_type, entity_id) DO UPDATE
       SET seq = h.seq + 1, prev_hash = h.head_hash, head_hash = sha256(h.head_hash || $6::bytea)
    RETURNING seq, prev_hash, head_hash
)
INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, actor_id,
                       actor_handle, actor_type, details, request_id, via, created_at,
                       prev_hash, hash)
SELECT 'task', $1, head.seq, $2, $1, 'created', $3, $4, 'agent', $7::jsonb, NULL, 'http', now(),
       head.prev_hash, head.head_hash
FROM head
"""


def bare_factory() -> Any:
    """`uvicorn --factory bench.rest_tasks:bare_factory`: the ceiling TaskFlow is compared to."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    dsn = os.environ[BARE_DSN_ENV]
    project_id, actor_id = int(os.environ["BENCH_PROJECT_ID"]), int(os.environ["BENCH_ACTOR_ID"])
    state: dict[str, asyncpg.Pool] = {}

    async def create(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        details = json.dumps({"new": body})
        async with state["pool"].acquire() as conn, conn.transaction():
            task_id = await conn.fetchval(_TASK_INSERT, project_id, body["title"], actor_id)
            await conn.execute(
                _AUDIT_APPEND,
                task_id,
                project_id,
                actor_id,
                "@bench-bot",
                bytes(32),
                details.encode(),
                details,
            )
        return JSONResponse({"id": task_id}, status_code=201)

    async def lifespan(app: Starlette) -> Any:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=BARE_POOL, max_size=BARE_POOL)
        yield
        await state["pool"].close()

    from contextlib import asynccontextmanager

    return Starlette(
        routes=[Route("/tasks", create, methods=["POST"])], lifespan=asynccontextmanager(lifespan)
    )


# ------------------------------------------------------------------ load


@dataclass
class Row:
    case: str
    requests: int
    concurrency: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float


async def load(
    name: str,
    base_url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None,
    requests: int,
    concurrency: int,
    expect: int,
) -> Row:
    """`requests` calls from `concurrency` workers over keep-alive connections."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as http:
        for _ in range(min(50, requests)):  # warm connections, pools and caches
            (await http.request(method, path, json=body)).raise_for_status()
        latencies: list[float] = []
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != expect:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return Row(
        name,
        requests,
        concurrency,
        round(elapsed, 3),
        round(requests / elapsed, 1),
        round(cuts[49] * 1000, 2),
        round(cuts[94] * 1000, 2),
    )


# ------------------------------------------------------------------ setup


@dataclass
class Seed:
    project_id: int
    actor_id: int
    api_key: str
    tree_root: int


async def seed(url: str, tree_size: int) -> Seed:
    """Migrate; a human, a project, an agent member with a key, and a task with a big subtree."""
    db = Database.from_url(url, pool_size=2)
    try:
        await upgrade(db)
        human = await workers.create_human(db, CreateHuman(handle="@bench", name="Bench"))
        owner = Actor(worker_id=human.id, handle=human.handle, type=WorkerType.HUMAN)
        project = await projects.create_project(db, owner, CreateProject(slug="bench", name="B"))
        issued = await workers.register_agent(
            db, owner, RegisterAgent(handle="@bench-bot", name="Bench bot")
        )
        await projects.add_member(
            db, owner, "bench", AddMember(handle="@bench-bot", role=Role.MEMBER)
        )
        root = (await tasks.create_task(db, owner, CreateTask(title="root", project="bench"))).task
        remaining, parents = tree_size, [root.id]
        while remaining > 0:  # breadth-first, ten children per node
            parent = parents.pop(0)
            batch = min(10, remaining)
            children = await tasks.add_subtasks(
                db, owner, parent, [SubtaskSpec(title=f"n{remaining - i}") for i in range(batch)]
            )
            parents += [c.id for c in children]
            remaining -= batch
        return Seed(project.id, issued.worker.id, issued.api_key, root.id)
    finally:
        await db.close()


@contextmanager
def temp_database(server_url: str) -> Iterator[str]:
    name = f"tf_bench_{uuid.uuid4().hex[:8]}"
    admin = to_async_url(server_url).set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield to_async_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextmanager
def uvicorn_app(target: str, env: dict[str, str]) -> Iterator[str]:
    from tests.http.live import start_uvicorn

    with start_uvicorn(target, env, app_dir=ROOT, health="") as server:
        yield server.base_url


# ------------------------------------------------------------------ run


def run_bench(server_url: str, args: argparse.Namespace) -> dict[str, Any]:
    with temp_database(server_url) as url:
        s = asyncio.run(seed(url, args.tree_size))
        plain_dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        tf_env = {"DATABASE_URL": url, "AUTH_SERVER_URL": "", "TASKFLOW_LOCAL_USER": ""}
        bare_env = {
            BARE_DSN_ENV: plain_dsn,
            "BENCH_PROJECT_ID": str(s.project_id),
            "BENCH_ACTOR_ID": str(s.actor_id),
        }
        auth = {"Authorization": f"Bearer {s.api_key}"}
        body = {"title": "bench task"}
        post_rows: dict[str, list[Row]] = {"taskflow": [], "bare": []}
        with (
            uvicorn_app("taskflow.server:factory", tf_env) as tf_url,
            uvicorn_app("bench.rest_tasks:bare_factory", bare_env) as bare_url,
        ):
            for _ in range(args.rounds):
                post_rows["bare"].append(
                    asyncio.run(
                        load(
                            "POST bare (asyncpg, 2 INSERTs)",
                            bare_url,
                            "POST",
                            "/tasks",
                            {},
                            body,
                            args.requests,
                            args.concurrency,
                            201,
                        )
                    )
                )
                post_rows["taskflow"].append(
                    asyncio.run(
                        load(
                            "POST /api/projects/{pid}/tasks",
                            tf_url,
                            "POST",
                            "/api/projects/bench/tasks",
                            auth,
                            body,
                            args.requests,
                            args.concurrency,
                            201,
                        )
                    )
                )
            tree = [
                asyncio.run(
                    load(
                        f"GET /api/tasks/{{id}} ({args.tree_size} descendants)",
                        tf_url,
                        "GET",
                        f"/api/tasks/{s.tree_root}",
                        auth,
                        None,
                        args.tree_requests,
                        c,
                        200,
                    )
                )
                for c in (1, args.concurrency)
            ]
    median = {
        k: sorted(v, key=lambda r: r.requests_per_second)[len(v) // 2] for k, v in post_rows.items()
    }
    # Each round runs bare then taskflow back to back: the ratio within a round is the fair one
    # on a machine whose load drifts; report the median of those.
    ratio = statistics.median(
        t.requests_per_second / b.requests_per_second
        for t, b in zip(post_rows["taskflow"], post_rows["bare"], strict=True)
    )
    return {"median": median, "rounds": post_rows, "tree": tree, "ratio": round(ratio, 3)}


def print_table(result: dict[str, Any]) -> None:
    header = f"{'case':46} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
    print(header)
    print("-" * len(header))
    rows = [result["median"]["bare"], result["median"]["taskflow"], *result["tree"]]
    for r in rows:
        print(
            f"{r.case:46} {r.concurrency:4} {r.requests_per_second:8.1f} {r.p50_ms:8.2f} "
            f"{r.p95_ms:8.2f}"
        )
    rounds = ", ".join(
        f"{t.requests_per_second:.0f}/{b.requests_per_second:.0f}"
        for t, b in zip(result["rounds"]["taskflow"], result["rounds"]["bare"], strict=True)
    )
    verdict = "meets" if result["ratio"] >= 0.6 else "misses"
    print(
        f"\ntaskflow / bare = {result['ratio']:.2f} (median of per-round ratios; target 0.6: "
        f"{verdict})"
    )
    print(f"rounds taskflow/bare req/s: {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="POSTs per target per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree-size", type=int, default=1000, help="descendants of the GET task")
    parser.add_argument("--tree-requests", type=int, default=100)
    args = parser.parse_args()

    with ExitStack() as stack:
        server_url, _ = stack.enter_context(postgres(os.environ.get(DATABASE_ENV)))
        result = run_bench(server_url, args)

    print_table(result)
    path = write_result(
        "rest_tasks",
        {
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "database": DATABASE_ENV if DATABASE_ENV in os.environ else "embedded pgserver",
            "uvicorn_workers": 1,
            "args": vars(args),
            "ratio_taskflow_over_bare": result["ratio"],
            "post_median": {k: asdict(v) for k, v in result["median"].items()},
            "post_rounds": {k: [asdict(r) for r in v] for k, v in result["rounds"].items()},
            "get_tree": [asdict(r) for r in result["tree"]],
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

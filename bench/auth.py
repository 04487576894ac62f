"""How fast does `Authenticator.authenticate()` resolve a bearer token? A sanity bench, not a test.

Measures, in one run against a real PostgreSQL and a real Better Auth server:
- `SELECT 1` through a pooled connection: the floor, one database round trip;
- `SELECT 1` inside `db.transaction()`: BEGIN, SELECT, COMMIT, the floor for any service call;
- an agent API key: checksum, SHA-256, one lookup (+ at most one `last_used_at` write a minute);
- a Better Auth JWT with the JWKS already cached: signature and claims checked in Python, then
  the worker looked up by `sub`.
Each is run sequentially (latency) and with N concurrent callers (throughput on one process).

    uv run python bench/auth.py [--seconds 2] [--concurrency 8]

With TASKFLOW_BENCH_DATABASE_URL unset, an embedded PostgreSQL is started in a temp directory.
Prints a table and writes bench/results/auth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.better_auth, which starts the real Better Auth server

from bench._harness import postgres, write_result  # noqa: E402
from taskflow.core.actor import Actor  # noqa: E402
from taskflow.core.auth.identity import Authenticator  # noqa: E402
from taskflow.core.auth.jwt import JwtVerifier  # noqa: E402
from taskflow.core.config import Settings  # noqa: E402
from taskflow.core.db import Database, to_async_url, upgrade  # noqa: E402
from taskflow.core.domain import Via, WorkerType  # noqa: E402
from taskflow.core.schemas import CreateHuman, RegisterAgent  # noqa: E402
from taskflow.core.services import workers  # noqa: E402
from tests.better_auth import start_better_auth  # noqa: E402

DATABASE_ENV = "TASKFLOW_BENCH_DATABASE_URL"
POOL_SIZE = 10


@dataclass
class Row:
    case: str
    mode: str
    ops: int
    seconds: float
    ops_per_second: float
    p50_ms: float | None
    p99_ms: float | None


async def sequential(name: str, op: Callable[[], Awaitable[Any]], seconds: float) -> Row:
    """One caller, back to back: per-call latency."""
    for _ in range(50):  # warm the pool, caches and prepared statements
        await op()
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        await op()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return Row(
        name,
        "sequential",
        len(latencies),
        round(elapsed, 3),
        round(len(latencies) / elapsed, 1),
        round(cuts[49] * 1000, 3),
        round(cuts[98] * 1000, 3),
    )


async def concurrent(
    name: str, op: Callable[[], Awaitable[Any]], seconds: float, callers: int
) -> Row:
    """`callers` coroutines sharing the pool: throughput of one process."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await op()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    elapsed = time.perf_counter() - start
    return Row(
        name, f"{callers} concurrent", done, round(elapsed, 3), round(done / elapsed, 1), None, None
    )


async def prepare_database(server_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A fresh database on the server, migrated; returns its URL and a function dropping it."""
    name = f"tf_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = to_async_url(server_url).set(drivername="postgresql", database="postgres")
    dsn = admin_dsn.render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    url = to_async_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


async def run(server_url: str, better_auth_url: str, jwt: str, seconds: float, callers: int) -> Any:
    url, drop = await prepare_database(server_url)
    db = Database.from_url(url, pool_size=POOL_SIZE)
    jwks_fetches = 0

    async def count(request: httpx.Request) -> None:
        nonlocal jwks_fetches
        jwks_fetches += 1

    client = httpx.AsyncClient(event_hooks={"request": [count]})
    settings = Settings(_env_file=None, auth_server_url=better_auth_url)  # type: ignore[call-arg]
    auth = Authenticator(db, JwtVerifier.from_settings(settings, client=client))
    try:
        await upgrade(db)
        human = await workers.create_human(db, CreateHuman(handle="@bench", name="Bench"))
        owner = Actor(worker_id=human.id, handle=human.handle, type=WorkerType.HUMAN)
        issued = await workers.register_agent(
            db, owner, RegisterAgent(handle="@bench-bot", name="Bench bot")
        )
        await auth.authenticate(jwt, Via.HTTP)  # fetch the JWKS, provision the human
        await auth.authenticate(issued.api_key, Via.MCP)  # set last_used_at

        async def select_1_pooled() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def select_1_transaction() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))

        async def api_key() -> None:
            await auth.authenticate(issued.api_key, Via.MCP)

        async def cached_jwt() -> None:
            await auth.authenticate(jwt, Via.HTTP)

        cases = [
            ("SELECT 1 (pooled connection)", select_1_pooled),
            ("SELECT 1 in db.transaction()", select_1_transaction),
            ("authenticate: API key", api_key),
            ("authenticate: JWT, JWKS cached", cached_jwt),
        ]
        rows = [await sequential(name, op, seconds) for name, op in cases]
        rows += [await concurrent(name, op, seconds, callers) for name, op in cases]
        return rows, jwks_fetches
    finally:
        await client.aclose()
        await db.close()
        await drop()


def print_table(rows: list[Row]) -> None:
    baseline = {r.mode: r.ops_per_second for r in rows if r.case.startswith("SELECT 1 in")}
    header = f"{'case':34} {'mode':14} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs txn':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r.ops_per_second / baseline[r.mode] if baseline.get(r.mode) else float("nan")
        p50 = f"{r.p50_ms:8.3f}" if r.p50_ms is not None else f"{'':8}"
        p99 = f"{r.p99_ms:8.3f}" if r.p99_ms is not None else f"{'':8}"
        print(f"{r.case:34} {r.mode:14} {r.ops_per_second:9.1f} {p50} {p99} {ratio:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and mode")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with ExitStack() as stack:
        server_url, _ = stack.enter_context(postgres(os.environ.get(DATABASE_ENV)))
        better_auth = stack.enter_context(start_better_auth("EdDSA"))
        session = better_auth.sign_up(
            f"bench-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery", "Bench"
        )
        jwt = better_auth.get_jwt(session)
        rows, jwks_fetches = asyncio.run(
            run(server_url, better_auth.base_url, jwt, args.seconds, args.concurrency)
        )

    print_table(rows)
    path = write_result(
        "auth",
        {
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "database": "embedded pgserver" if DATABASE_ENV not in os.environ else DATABASE_ENV,
            "jwt_alg": "EdDSA",
            "seconds_per_case": args.seconds,
            "pool_size": POOL_SIZE,
            "jwks_fetched": jwks_fetches,
            "rows": [asdict(r) for r in rows],
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

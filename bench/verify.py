"""`audit verify` throughput: entries per second over N generated, hash-chained entries.

One database with N audit entries over N/5 task chains (bench/_data.py; PostgreSQL computes
each hash over the payload `audit.verify` rebuilds, so the log verifies), then rounds that
alternate `audit.verify` (what `taskflow audit verify` runs: stream the log, recompute every
hash in Python, compare with the chain heads) with the baseline: the same query's rows merely
fetched through the same driver, no hashing. Target (issue 12): >= 500,000 entries/s.

    uv run python bench/verify.py                    # 1,000,000 entries, 3 rounds
    uv run python bench/verify.py --quick            # 10,000 entries (CI)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._data import load_audit, load_tree
from bench._support import parser, print_table, quick, ratio_line, seed, write_result
from taskflow.core import audit
from taskflow.core.db import Database
from tests.support.servers import fresh_database, plain_dsn, postgres

TARGET = 500_000
CHAIN_LENGTH = 5


async def verify_once(db: Database) -> tuple[float, int]:
    start = time.perf_counter()
    result = await audit.verify(db)
    seconds = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"the generated log does not verify: {result.problems[:3]}")
    return seconds, result.entries_checked


async def fetch_once(db: Database) -> tuple[float, int]:
    """The verify query's rows, fetched in the same batches' driver, and nothing else."""
    start = time.perf_counter()
    count = 0
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            async for _ in raw.cursor(audit._VERIFY_SQL, prefetch=10_000):
                count += 1
    return time.perf_counter() - start, count


async def measure(url: str, rounds: int) -> dict[str, Any]:
    db = Database.from_url(url, pool_size=2)
    runs: dict[str, list[float]] = {"audit verify": [], "fetch only": []}
    entries = 0
    try:
        await verify_once(db)  # warm: page cache
        for n in range(rounds):
            order = [("audit verify", verify_once), ("fetch only", fetch_once)]
            for name, fn in order if n % 2 == 0 else reversed(order):
                seconds, entries = await fn(db)
                runs[name].append(entries / seconds)
                print(f"  round {n + 1} {name}: {entries / seconds:,.0f} entries/s", flush=True)
    finally:
        await db.close()
    return {"entries": entries, "entries_per_second": runs}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=0.0, rounds=3)
    p.add_argument("--entries", type=int, default=1_000_000, help="audit entries to generate")
    args = quick(p.parse_args(argv), rounds=1, entries=10_000)
    tasks = max(1, args.entries // CHAIN_LENGTH)
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_vfy") as url,
    ):
        s = asyncio.run(seed(url))
        dsn = plain_dsn(url)
        print(f"loading {tasks:,} tasks and {args.entries:,} audit entries ...", flush=True)
        actor = s.owner.worker_id
        asyncio.run(load_tree(dsn, project_id=s.project_id, actor_id=actor, tasks=tasks))
        asyncio.run(load_audit(dsn, actor_id=actor, tasks=tasks, entries=args.entries))
        result = asyncio.run(measure(url, args.rounds))
    rates = {k: statistics.median(v) for k, v in result["entries_per_second"].items()}
    print_table(
        f"{result['entries']:,} audit entries, median of {args.rounds}",
        ["side", "entries/s"],
        [[k, round(v)] for k, v in rates.items()],
    )
    ratio = round(rates["audit verify"] / rates["fetch only"], 3)
    print(f"\naudit verify: {rates['audit verify']:,.0f} entries/s (target >= {TARGET:,})")
    ratio_line("verify / fetch only", ratio, "the driver's read alone is the ceiling")
    write_result(
        "verify",
        args,
        {
            "entries": result["entries"],
            "entries_per_second": round(rates["audit verify"]),
            "target": TARGET,
            "ratio_to_fetch": ratio,
            "rounds": result["entries_per_second"],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Subtree reads through `GET /api/tasks/{id}`: a 100,000-node tree page by page vs `psql`, a
10,000-deep chain read and deleted, and the server's memory under 8 concurrent large reads.

One database holds all of it (bench/_data.py): a ten-way tree of N tasks, a chain D deep (no
task of it completed, so rolled-up progress visits every level) and a wide tree of W children
with 20 KB descriptions. TaskFlow is the app `taskflow serve` runs (one uvicorn worker), called
with an agent's API key.

- **Tree:** TaskFlow reads the whole tree page by page (`?limit=L`, then `?cursor=...` until
  `next_cursor` is null); the baseline is `psql` running one recursive query that returns the
  same rows (the service's columns, depth first) as one JSON document, process start included.
  They alternate round by round; each side's time is the median. The client's JSON parsing is
  not timed (it reads the body, then looks for the cursor outside the timing). Targets
  (issue 12): TaskFlow <= 4x psql, first page < 0.2 s.
- **Deep chain:** the chain's first page (default limit), median of 3, and then
  `DELETE /api/tasks/{root}` (the whole chain, one audit entry per task), once. Targets: first
  page < 1 s, delete < 3 s, in a database that holds the tree's tasks as well.
- **Memory:** the server's RSS (`/proc/<pid>/status`) before, at its peak during, and after 8
  clients at once each read the wide tree to its end, at the default page size and at L.

    uv run python bench/subtree.py                   # N 100,000, D 10,000, W 5,000, 5 rounds
    uv run python bench/subtree.py --quick           # 1,000 / 200 / 50 (CI)
    uv run python bench/subtree.py --limit 0         # send no limit (a server without paging)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._data import load_chain, load_tree, load_wide
from bench._support import (
    NEVER_LIMITED,
    parser,
    print_table,
    quick,
    ratio_line,
    seed,
    write_result,
)
from tests.support.servers import fresh_database, plain_dsn, postgres, serve

TARGET_RATIO = 4.0
TARGET_FIRST_PAGE_S = 0.2
TARGET_CHAIN_PAGE_S = 1.0
TARGET_CHAIN_DELETE_S = 3.0
READERS = 8
DESCRIPTION = 20_000
TIMEOUT_S = 300

# The same rows the service's subtree query returns, as one JSON array, depth first.
PSQL_QUERY = """
WITH RECURSIVE sub AS (
    SELECT t.id, 0 AS depth, ARRAY[t.id] AS path FROM tasks t WHERE t.id = 1
    UNION ALL
    SELECT c.id, s.depth + 1, s.path || c.id FROM tasks c JOIN sub s ON c.parent_id = s.id
)
SELECT json_agg(r ORDER BY r.path) FROM (
    SELECT t.id, t.parent_id, t.title, t.description, t.status, t.priority, t.progress_percent,
           t.tags, t.due_date, t.recurrence, t.version, t.created_at, t.updated_at,
           p.slug AS project, a.handle AS assignee, cb.handle AS created_by, sub.depth, sub.path
    FROM sub
    JOIN tasks t ON t.id = sub.id
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers a ON a.id = t.assignee_id
    JOIN workers cb ON cb.id = t.created_by_id
) r
"""


def read_taskflow(client: httpx.Client, url: str, limit: int) -> dict[str, Any]:
    """Every page of a subtree: seconds in all, seconds to the first page, pages, nodes."""
    pages, nodes, first, total, cursor = 0, 0, 0.0, 0.0, None
    base = {"limit": limit} if limit else {}
    while True:
        params = {**base, "cursor": cursor} if cursor else base
        start = time.perf_counter()
        answer = client.get(url, params=params or None)
        body = answer.content
        total += time.perf_counter() - start
        answer.raise_for_status()
        first = first or total
        pages += 1
        page = json.loads(body)
        nodes += (pages == 1) + len(page.get("subtree", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return {"seconds": total, "first_page_s": first, "pages": pages, "nodes": nodes}


def read_psql(psql: str, dsn: str) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [psql, dsn, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", PSQL_QUERY],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.decode()}")
    return {"seconds": seconds, "bytes": len(done.stdout)}


def first_page(client: httpx.Client, url: str) -> dict[str, Any]:
    """One timed GET of a subtree's first page (the default page size)."""
    start = time.perf_counter()
    answer = client.get(url)
    body = answer.content
    seconds = time.perf_counter() - start
    nodes = len(json.loads(body).get("subtree", [])) if answer.status_code == 200 else 0
    return {"seconds": seconds, "status": answer.status_code, "nodes": nodes, "bytes": len(body)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def concurrent_reads(pid: int, url: str, api_key: str, limit: int) -> dict[str, Any]:
    """RSS before, at its peak while `READERS` clients each read the subtree to its end, after."""
    before = rss_mb(pid)
    peak, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.02)

    results: list[dict[str, Any]] = []

    def reader() -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(headers=headers, timeout=TIMEOUT_S) as client:
            results.append(read_taskflow(client, url, limit))

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    readers = [threading.Thread(target=reader) for _ in range(READERS)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    time.sleep(1.0)  # let the allocator hand back what it will
    return {
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak), 1),
        "rss_after_mb": round(rss_mb(pid), 1),
        "seconds": round(seconds, 3),
        "pages_per_reader": results[0]["pages"] if results else 0,
        "nodes_per_reader": results[0]["nodes"] if results else 0,
        "readers_done": len(results),
    }


async def count_deleted(dsn: str, first: int, last: int) -> tuple[int, int]:
    """(tasks left, `deleted` audit entries) for ids first..last."""
    conn = await asyncpg.connect(dsn)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE id BETWEEN $1 AND $2", first, last
        )
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'deleted' AND entity_type = 'task' "
            "AND entity_id BETWEEN $1 AND $2",
            first,
            last,
        )
        return int(left), int(audited)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=0.0, rounds=5)
    p.add_argument("--nodes", type=int, default=100_000, help="tasks in the ten-way tree")
    p.add_argument("--chain", type=int, default=10_000, help="levels of the deep chain")
    p.add_argument("--wide", type=int, default=5_000, help="children of the wide tree")
    p.add_argument("--limit", type=int, default=1_000, help="page size of the tree read (0: none)")
    args = quick(p.parse_args(argv), rounds=2, nodes=1_000, chain=200, wide=50)
    psql = shutil.which("psql")
    if psql is None:
        sys.exit("psql is not installed: run `apt-get install -y postgresql-client`")
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_tree") as url,
    ):
        s = asyncio.run(seed(url))
        dsn = plain_dsn(url)
        owner = {"project_id": s.project_id, "actor_id": s.owner.worker_id}
        print(f"loading a {args.nodes:,}-node tree, a {args.chain:,}-deep chain and ", end="")
        print(f"{args.wide:,} tasks with {DESCRIPTION:,}-character descriptions ...", flush=True)
        asyncio.run(load_tree(dsn, tasks=args.nodes, **owner))
        chain_root = asyncio.run(load_chain(dsn, first=args.nodes + 1, depth=args.chain, **owner))
        chain_last = chain_root + args.chain
        description = 2_000 if args.quick else DESCRIPTION
        wide_root = asyncio.run(
            load_wide(
                dsn, first=chain_last + 1, children=args.wide, description=description, **owner
            )
        )
        tf_runs, psql_runs, default_first = [], [], []
        with (
            serve("taskflow", url, NEVER_LIMITED) as tf,
            httpx.Client(
                headers={"Authorization": f"Bearer {s.api_key}"}, timeout=TIMEOUT_S
            ) as http,
        ):
            api = tf.base_url + "/api/tasks/"
            endpoint = api + "1"
            read_taskflow(http, endpoint, args.limit)  # warm: pools, caches, page cache
            read_psql(psql, dsn)
            for n in range(args.rounds):
                sides = [("taskflow", tf_runs), ("psql", psql_runs)]
                for name, runs in sides if n % 2 == 0 else reversed(sides):
                    run = (
                        read_taskflow(http, endpoint, args.limit)
                        if name == "taskflow"
                        else read_psql(psql, dsn)
                    )
                    runs.append(run)
                    print(f"  round {n + 1} {name}: {run['seconds']:.3f} s", flush=True)
                default_first.append(first_page(http, endpoint))
            chain_pages = [first_page(http, api + str(chain_root)) for _ in range(3)]
            for run in chain_pages:
                print(f"  chain first page: {run['seconds']:.3f} s ({run['status']})", flush=True)
            memory = [
                {"limit": limit or "default"}
                | concurrent_reads(tf.process.pid, api + str(wide_root), s.api_key, limit)
                for limit in sorted({0, args.limit})
            ]
            for run in memory:
                print(f"  {READERS} concurrent reads: {run}", flush=True)
            start = time.perf_counter()
            deleted = http.delete(api + str(chain_root))
            delete_s = time.perf_counter() - start
            left, audited = asyncio.run(count_deleted(dsn, chain_root, chain_last))
            print(f"  chain delete: {delete_s:.3f} s ({deleted.status_code})", flush=True)
    if tf_runs[-1]["nodes"] != args.nodes:
        raise SystemExit(f"TaskFlow answered {tf_runs[-1]['nodes']} nodes, not {args.nodes}")
    tf_s = statistics.median(r["seconds"] for r in tf_runs)
    first_s = statistics.median(r["first_page_s"] for r in tf_runs)
    default_s = statistics.median(r["seconds"] for r in default_first)
    psql_s = statistics.median(r["seconds"] for r in psql_runs)
    chain_s = statistics.median(r["seconds"] for r in chain_pages)
    limit = args.limit or "none"
    print_table(
        f"{args.nodes:,}-node subtree, median of {args.rounds}",
        ["side", "seconds", "first page s", "pages"],
        [
            [
                f"GET /api/tasks/{{id}}, limit {limit}",
                round(tf_s, 3),
                round(first_s, 3),
                tf_runs[-1]["pages"],
            ],
            ["GET /api/tasks/{id}, first page, default limit", "", round(default_s, 3), 1],
            ["psql, one recursive query as JSON", round(psql_s, 3), "", 1],
        ],
    )
    print_table(
        f"{args.chain:,}-deep chain",
        ["what", "seconds", "status", "target s"],
        [
            [
                "first page (median of 3)",
                round(chain_s, 3),
                chain_pages[-1]["status"],
                TARGET_CHAIN_PAGE_S,
            ],
            [
                "DELETE /api/tasks/{root}",
                round(delete_s, 3),
                deleted.status_code,
                TARGET_CHAIN_DELETE_S,
            ],
        ],
    )
    print(f"  after the delete: {left} tasks of the chain left, {audited} `deleted` entries")
    print_table(
        f"server RSS, {READERS} clients each reading a {args.wide:,}-child subtree to its end",
        ["page size", "before MB", "peak MB", "after MB", "seconds"],
        [
            [r["limit"], r["rss_before_mb"], r["rss_peak_mb"], r["rss_after_mb"], r["seconds"]]
            for r in memory
        ],
    )
    ratio = round(tf_s / psql_s, 3)
    ratio_line("taskflow / psql", ratio, f"target <= {TARGET_RATIO}")
    print(f"first page: {first_s:.3f} s (target < {TARGET_FIRST_PAGE_S} s)")
    write_result(
        "subtree",
        args,
        {
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "first_page_s": round(first_s, 4),
            "first_page_default_limit_s": round(default_s, 4),
            "target_first_page_s": TARGET_FIRST_PAGE_S,
            "nodes": args.nodes,
            "limit": args.limit,
            "taskflow": tf_runs,
            "psql": psql_runs,
            "chain": {
                "depth": args.chain,
                "first_page": chain_pages,
                "first_page_s": round(chain_s, 4),
                "target_first_page_s": TARGET_CHAIN_PAGE_S,
                "delete_s": round(delete_s, 4),
                "delete_status": deleted.status_code,
                "target_delete_s": TARGET_CHAIN_DELETE_S,
                "tasks_left": left,
                "deleted_entries": audited,
            },
            "memory": {"readers": READERS, "children": args.wide, "runs": memory},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

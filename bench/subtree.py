"""A 100,000-node subtree read through `GET /api/tasks/{id}` vs `psql` running one recursive query.

One database with a ten-way tree of N tasks (bench/_data.py); TaskFlow (the app `taskflow serve`
runs, one uvicorn worker) answers `GET /api/tasks/1` for an agent API key; the baseline is
`psql` running one recursive query that returns the same rows (the service's columns, depth
first) as one JSON document. They alternate round by round; each side's time is the median.

TaskFlow's time is the whole read: the first answer and, when the answer carries a
`next_cursor`, every further page (`?cursor=...`) until none is left; the client's JSON parsing
is not counted (it reads the body, then looks for the cursor outside the timing). Today the
endpoint answers the whole subtree at once, so there is one page. psql's time includes
starting psql. Targets (issue 12): TaskFlow <= 4x psql, first page < 0.2 s.

    uv run python bench/subtree.py                   # 100,000 nodes, 5 rounds
    uv run python bench/subtree.py --quick           # 1,000 nodes (CI)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._data import load_tree
from bench._support import parser, print_table, quick, ratio_line, seed, write_result
from tests.support.servers import fresh_database, plain_dsn, postgres, serve

TARGET_RATIO = 4.0
TARGET_FIRST_PAGE_S = 0.2

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


def read_taskflow(client: httpx.Client, url: str) -> dict[str, Any]:
    """Every page of the subtree: (seconds in all, seconds to the first page, pages, nodes)."""
    pages, nodes, first, cursor = 0, 0, 0.0, None
    total = 0.0
    while True:
        start = time.perf_counter()
        answer = client.get(url, params={"cursor": cursor} if cursor else None)
        body = answer.content
        total += time.perf_counter() - start
        answer.raise_for_status()
        first = first or total
        pages += 1
        page = json.loads(body)
        nodes += ("task" in page and pages == 1) + len(page.get("subtree", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return {"seconds": total, "first_page_s": first, "pages": pages, "nodes": nodes}


def read_psql(psql: str, dsn: str) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [psql, dsn, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", PSQL_QUERY],
        capture_output=True,
        timeout=300,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.decode()}")
    return {"seconds": seconds, "bytes": len(done.stdout)}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=0.0, rounds=5)
    p.add_argument("--nodes", type=int, default=100_000, help="tasks in the subtree")
    args = quick(p.parse_args(argv), rounds=2, nodes=1_000)
    psql = shutil.which("psql")
    if psql is None:
        sys.exit("psql is not installed: run `apt-get install -y postgresql-client`")
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_tree") as url,
    ):
        s = asyncio.run(seed(url))
        dsn = plain_dsn(url)
        print(f"loading a {args.nodes:,}-node tree ...", flush=True)
        asyncio.run(
            load_tree(dsn, project_id=s.project_id, actor_id=s.owner.worker_id, tasks=args.nodes)
        )
        tf_runs, psql_runs = [], []
        with (
            serve("taskflow", url) as tf,
            httpx.Client(headers={"Authorization": f"Bearer {s.api_key}"}, timeout=300) as http,
        ):
            endpoint = tf.base_url + "/api/tasks/1"
            read_taskflow(http, endpoint)  # warm: pools, caches, page cache
            read_psql(psql, dsn)
            for n in range(args.rounds):
                sides = [("taskflow", tf_runs), ("psql", psql_runs)]
                for name, runs in sides if n % 2 == 0 else reversed(sides):
                    run = (
                        read_taskflow(http, endpoint)
                        if name == "taskflow"
                        else read_psql(psql, dsn)
                    )
                    runs.append(run)
                    print(f"  round {n + 1} {name}: {run['seconds']:.3f} s", flush=True)
    if tf_runs[-1]["nodes"] != args.nodes:
        raise SystemExit(f"TaskFlow answered {tf_runs[-1]['nodes']} nodes, not {args.nodes}")
    tf_s = statistics.median(r["seconds"] for r in tf_runs)
    first_s = statistics.median(r["first_page_s"] for r in tf_runs)
    psql_s = statistics.median(r["seconds"] for r in psql_runs)
    print_table(
        f"{args.nodes:,}-node subtree, median of {args.rounds}",
        ["side", "seconds", "first page s", "pages"],
        [
            ["GET /api/tasks/{id}", round(tf_s, 3), round(first_s, 3), tf_runs[-1]["pages"]],
            ["psql, one recursive query as JSON", round(psql_s, 3), "", 1],
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
            "target_first_page_s": TARGET_FIRST_PAGE_S,
            "nodes": args.nodes,
            "taskflow": tf_runs,
            "psql": psql_runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""REST create task vs a bare Starlette + asyncpg endpoint doing the same two INSERTs.

Two uvicorn servers, one worker each, same database, same run: TaskFlow's app (the one
`taskflow serve` runs) answering `POST /api/projects/{pid}/tasks` for an agent API key
(authentication, validation, membership check, the task INSERT and its hash-chained audit
INSERT in one transaction, the answer), and bench/_bare.py doing only the two INSERTs in one
transaction. `wrk -t1 -c16` drives each in alternating rounds; the ratio is the median of the
per-round throughput ratios. Target (issue 12): >= 0.6.

    uv run python bench/rest_create.py                 # 5 rounds of 10 s per side
    uv run python bench/rest_create.py --quick         # seconds (CI)
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    NEVER_LIMITED,
    WRK_HEADER,
    Side,
    alternate,
    median,
    parser,
    print_table,
    quick,
    ratio_line,
    require_wrk,
    round_ratios,
    seed,
    write_result,
    wrk,
    wrk_script,
    wrk_summary,
)
from tests.support.servers import fresh_database, plain_dsn, postgres, serve, uvicorn_app

TARGET = 0.6


def main(argv: list[str] | None = None) -> int:
    args = quick(parser(__doc__, duration=10.0, rounds=5).parse_args(argv))
    require_wrk()
    body = json.dumps({"title": "bench task"})
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_rest") as url,
    ):
        s = asyncio.run(seed(url))
        bare_env = {
            "BENCH_BARE_DSN": plain_dsn(url),
            "BENCH_PROJECT_ID": str(s.project_id),
            "BENCH_ACTOR_ID": str(s.agent_id),
        }
        json_headers = {"Content-Type": "application/json"}
        tf_script = wrk_script(
            "POST", {**json_headers, "Authorization": f"Bearer {s.api_key}"}, body
        )
        bare_script = wrk_script("POST", json_headers, body)
        with (
            serve("taskflow", url, NEVER_LIMITED) as tf,
            uvicorn_app("bare", "bench._bare:factory", bare_env, ready_path="/health") as bare,
        ):
            tf_url = f"{tf.base_url}/api/projects/{s.project_id}/tasks"
            sides = [
                Side(
                    "bare", lambda d: wrk("bare", bare.base_url + "/tasks", bare_script, seconds=d)
                ),
                Side("taskflow", lambda d: wrk("taskflow", tf_url, tf_script, seconds=d)),
            ]
            runs = alternate(sides, args.rounds, args.duration)
    rows, rounds = wrk_summary(runs)
    print_table("POST create task, wrk -t1 -c16", WRK_HEADER, rows)
    ratios = round_ratios(runs, "taskflow", "bare")
    ratio = median(ratios)
    ratio_line("taskflow / bare", ratio, f"target >= {TARGET}")
    write_result(
        "rest_create",
        args,
        {"ratio": ratio, "target": TARGET, "round_ratios": ratios, "rounds": rounds},
    )
    errors = sum(r[-1] for r in rows)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

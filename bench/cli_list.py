"""`taskflow list` on a warm embedded database vs the bare Typer + Rich + pydantic imports.

Each command is a fresh process, as a user types it; the two alternate run by run, so machine
load falls on both alike. Warm means what a normal install sees on the second command: the
embedded PostgreSQL left running by the previous command, bytecode cached (a private
PYTHONPYCACHEPREFIX, primed by the warm-up runs, since this sandbox may forbid `.pyc` files).
The baseline is `python -c "import typer, rich.console, rich.table, pydantic"`: what any CLI
built on the same libraries pays before doing anything. Target (issue 12): list / imports <= 2.5.

    uv run python bench/cli_list.py                  # 20 runs each
    uv run python bench/cli_list.py --quick          # seconds (CI)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import parser, print_table, quick, ratio_line, write_result
from taskflow.core import embedded
from taskflow.core.actor import Actor
from taskflow.core.db import Database, upgrade
from taskflow.core.domain import Via, WorkerType
from taskflow.core.schemas import CreateTask
from taskflow.core.services import onboarding, tasks

TARGET = 2.5
TASKFLOW = str(Path(sys.executable).parent / "taskflow")
IMPORTS = [sys.executable, "-c", "import typer, rich.console, rich.table, pydantic"]


async def seed(data_dir: Path, count: int) -> None:
    """An embedded database with a local user and `count` tasks; the CLI's config naming them."""
    started = await asyncio.to_thread(embedded.start, data_dir, keep_running=True)
    url = started.url
    db = Database.from_url(url, pool_size=2)
    try:
        await upgrade(db)
        setup = await onboarding.init_local(db, "@bench", "Bench")
        actor = Actor(setup.user.id, setup.user.handle, WorkerType.HUMAN, via=Via.CLI)
        for i in range(count):
            await tasks.create_task(db, actor, CreateTask(title=f"Task {i}", tags=["bench"]))
    finally:
        await db.close()
    config = {"current_user": "@bench", "default_project": "default"}
    (data_dir / "config.json").write_text(json.dumps(config))


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=0.0, rounds=20)
    p.add_argument("--tasks", type=int, default=100, help="tasks in the database")
    args = quick(p.parse_args(argv), rounds=3, tasks=10)
    tmp = Path(tempfile.mkdtemp(prefix="tf-cli-bench-"))
    data_dir = tmp / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TASKFLOW_TOKEN", "PYTHONDONTWRITEBYTECODE")
    }
    env |= {
        "TASKFLOW_DATA_DIR": str(data_dir),
        "NO_COLOR": "1",
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
    }
    sides = {"imports": IMPORTS, "taskflow list": [TASKFLOW, "list"]}
    times: dict[str, list[float]] = {name: [] for name in sides}
    try:
        print(f"seeding an embedded database with {args.tasks} tasks ...", flush=True)
        asyncio.run(seed(data_dir, args.tasks))
        for command in sides.values():  # warm-up: bytecode cache, page cache, server up
            timed(command, env)
            timed(command, env)
        for n in range(args.rounds):
            order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
            for name, command in order:
                times[name].append(timed(command, env))
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = [
        [name, round(medians[name], 3), round(min(t), 3), round(max(t), 3), len(t)]
        for name, t in times.items()
    ]
    print_table(
        f"fresh processes, warm ({args.tasks} tasks)",
        ["command", "median s", "min s", "max s", "runs"],
        rows,
    )
    ratio = round(medians["taskflow list"] / medians["imports"], 3)
    ratio_line("taskflow list / bare imports", ratio, f"target <= {TARGET}")
    write_result(
        "cli_list",
        args,
        {
            "ratio": ratio,
            "target": TARGET,
            "tasks": args.tasks,
            "median_s": medians,
            "times_s": times,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

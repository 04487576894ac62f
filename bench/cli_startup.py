"""CLI startup benchmark: how long `taskflow list` takes on an existing embedded database.

Target: under 2 s. Compared with `python -c pass` (the interpreter alone) and `taskflow --version`
(imports only, no database). Each command runs as a fresh process, as a user types it.

Two conditions matter, so both are measured:
- bytecode cache: a normal install writes `.pyc` files on first import and reuses them; this
  sandbox sets PYTHONDONTWRITEBYTECODE=1, so every start recompiles every module. "warm" runs use
  a private PYTHONPYCACHEPREFIX (primed once); "cold" runs forbid bytecode files.
- the embedded PostgreSQL: commands leave it running for the next one ("server up"); the
  "server stopped" rows stop it before each run, so they include starting it.

Not a test: prints a table and writes JSON (bench/results/cli_startup.json).

    uv run python bench/cli_startup.py               # about a minute
    uv run python bench/cli_startup.py --runs 15 --tasks 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from taskflow.core.actor import Actor
from taskflow.core.db import Database, start_embedded, stop_embedded, upgrade
from taskflow.core.domain import Via, WorkerType
from taskflow.core.schemas import CreateTask
from taskflow.core.services import onboarding, tasks

RESULTS = Path(__file__).resolve().parent / "results" / "cli_startup.json"
TASKFLOW = Path(sys.executable).parent / "taskflow"
TARGET_SECONDS = 2.0


async def seed(data_dir: Path, count: int) -> None:
    """An embedded database with a local user and `count` tasks, as after some weeks of use."""
    url = await asyncio.to_thread(start_embedded, data_dir, keep_running=True)
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


def run_once(argv: list[str], env: dict[str, str], before: list[str] | None = None) -> float:
    if before:
        subprocess.run(before, env=env, capture_output=True, check=True)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def summarise(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
    }


def environments(tmp: Path, data_dir: Path) -> dict[str, dict[str, str]]:
    """warm: bytecode cached in a private prefix; cold: an empty prefix nobody may write to."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TASKFLOW_TOKEN")}
    base |= {"TASKFLOW_DATA_DIR": str(data_dir), "NO_COLOR": "1"}
    warm = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    warm["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache-warm")
    cold = base | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp / "pycache-none")}
    return {"warm": warm, "cold": cold}


def cases() -> list[tuple[str, list[str], list[str] | None]]:
    python = [sys.executable, "-c", "pass"]
    stop = [str(TASKFLOW), "db", "stop"]
    return [
        ("python -c pass (baseline)", python, None),
        ("taskflow --version (imports only)", [str(TASKFLOW), "--version"], None),
        ("taskflow list (server up)", [str(TASKFLOW), "list"], None),
        ("taskflow list --json (server up)", [str(TASKFLOW), "list", "--json"], None),
        ("taskflow list (server stopped)", [str(TASKFLOW), "list"], stop),
    ]


def rounds(envs: dict[str, dict[str, str]], runs: int, console: Console) -> list[dict[str, Any]]:
    """Round-robin over every case, so background load skews all rows alike."""
    plan = [
        (name, argv, before, cond, env)
        for name, argv, before in cases()
        for cond, env in envs.items()
    ]
    times: dict[tuple[str, str], list[float]] = {(p[0], p[3]): [] for p in plan}
    for _, argv, before, _, env in plan:  # warm-up: page cache, bytecode cache
        run_once(argv, env, before)
    for n in range(runs):
        for name, argv, before, condition, env in plan:
            times[(name, condition)].append(run_once(argv, env, before))
        console.print(f"  round {n + 1}/{runs} done")
    return [
        {"command": name, "bytecode": condition, **summarise(t)}
        for (name, condition), t in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="timed rounds (each runs every row)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in the database")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tf-cli-bench-"))
    data_dir = tmp / "data"
    console = Console()
    try:
        console.print(f"Seeding an embedded database with {args.tasks} tasks in {data_dir} ...")
        asyncio.run(seed(data_dir, args.tasks))
        rows = rounds(environments(tmp, data_dir), args.runs, console)
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    report(console, rows, args)


def report(console: Console, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    baseline = {r["bytecode"]: r["median_s"] for r in rows if r["command"].startswith("python -c")}
    table = Table(title=f"CLI startup ({args.tasks} tasks, median of {args.runs})")
    for column in ("command", "bytecode", "median s", "min s", "max s", "over baseline s"):
        table.add_column(column, justify="left" if column in ("command", "bytecode") else "right")
    for r in rows:
        table.add_row(
            r["command"],
            r["bytecode"],
            f"{r['median_s']:.3f}",
            f"{r['min_s']:.3f}",
            f"{r['max_s']:.3f}",
            f"{r['median_s'] - baseline[r['bytecode']]:.3f}",
        )
    console.print(table)
    target = next(
        r for r in rows if r["command"] == "taskflow list (server up)" and r["bytecode"] == "warm"
    )
    verdict = "meets" if target["median_s"] < TARGET_SECONDS else "MISSES"
    console.print(
        f"`taskflow list`, normal install, server up: {target['median_s']:.2f} s: {verdict} the "
        f"{TARGET_SECONDS:.0f} s target"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "target_s": TARGET_SECONDS,
                "tasks": args.tasks,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "rows": rows,
            },
            indent=2,
        )
    )
    console.print(f"JSON: {RESULTS}")


if __name__ == "__main__":
    main()

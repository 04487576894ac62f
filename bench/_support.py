"""What the bench scripts share: wrk, seeding, alternating rounds, the table and the JSON.

Every bench compares TaskFlow with a baseline in the same run, on this machine, and reports the
ratio. HTTP load comes from `wrk` (a C load generator, `apt-get install -y wrk`), so the client
is never what saturates; the servers and PostgreSQL come from tests/support/servers.py (plain
helpers, shared with the slow tests). Loads target only 127.0.0.1 and are bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts run as `python bench/x.py`
    sys.path.insert(0, str(ROOT))

from taskflow.core.actor import Actor  # noqa: E402
from taskflow.core.db import Database, upgrade  # noqa: E402
from taskflow.core.domain import Role, WorkerType  # noqa: E402
from taskflow.core.schemas import AddMember, CreateHuman, CreateProject, RegisterAgent  # noqa: E402
from taskflow.core.services import projects, workers  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
NEVER_LIMITED = {
    "RATE_LIMIT_WRITES_PER_MINUTE": "1000000000",
    "RATE_LIMIT_READS_PER_MINUTE": "1000000000",
}
"""The served app's rate limits, so high that one agent's load is never refused: the limiter
still runs (its cost is measured), it just always has a token."""
DATABASE_ENV = "TASKFLOW_BENCH_DATABASE_URL"  # a server to create the bench database on
WRK_INSTALL = "apt-get install -y wrk"
LOAD_AT_START = os.getloadavg()  # how noisy the machine was when the bench began


# ------------------------------------------------------------------ arguments and output


def parser(doc: str | None, *, duration: float, rounds: int) -> argparse.ArgumentParser:
    """The options every bench takes; --quick is the CI mode (seconds, proves it still runs)."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=rounds, help="alternating rounds per side")
    p.add_argument("--duration", type=float, default=duration, help="seconds per round")
    p.add_argument("--database-url", default=os.environ.get(DATABASE_ENV) or None)
    p.add_argument("--quick", action="store_true", help="tiny N, one short round (CI)")
    p.add_argument("--json", type=Path, default=None, help="where to write the result JSON")
    return p


def quick(args: argparse.Namespace, **small: Any) -> argparse.Namespace:
    """Shrink the run for --quick: one round of a second, and whatever else the bench names."""
    if args.quick:
        args.rounds, args.duration = 1, 1.0
        for key, value in small.items():
            setattr(args, key, value)
    return args


def machine() -> dict[str, Any]:
    """Where the numbers came from; the load average says how noisy the machine was."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "load_average_at_start": [round(x, 2) for x in LOAD_AT_START],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def write_result(name: str, args: argparse.Namespace, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json (or --json): the numbers, the command, the machine, the time."""
    path = args.json or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "bench": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["uv run python", f"bench/{name}.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table (copied into docs/performance.md as is)."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def ratio_line(name: str, value: float, target: str) -> str:
    """The figure the bench is for, printed last; `target` reads e.g. ">= 0.6"."""
    line = f"{name}: {value:.3f} ({target})"
    print(f"\n{line}")
    return line


# ------------------------------------------------------------------ wrk


@dataclass
class WrkRun:
    """One wrk run's numbers, from the Lua `done` hook (exact counts, microsecond latencies)."""

    side: str
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # connect/read/write/timeout errors plus non-2xx/3xx answers


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"errors":%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def require_wrk() -> str:
    """The wrk binary, or exit with how to install it (CI's .ci/run installs it from Debian)."""
    found = shutil.which("wrk")
    if found is None:
        sys.exit(f"wrk is not installed: run `{WRK_INSTALL}` (Debian package wrk)")
    return found


def wrk_script(method: str, headers: dict[str, str], body: str | None) -> Path:
    """A Lua file in a temp dir setting the request (method, headers, body) and the summary."""
    lines = [f"wrk.method = {json.dumps(method)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    path = Path(tempfile.mkdtemp(prefix="tf-wrk-")) / "request.lua"
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def _lua_string(text: str) -> str:
    """A Lua long string that cannot be closed by the text itself."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def wrk(
    side: str,
    url: str,
    script: Path,
    *,
    seconds: float,
    threads: int = 1,
    connections: int = 16,
) -> WrkRun:
    """`wrk -t1 -c16 -d<seconds>s --latency -s script url`, parsed; fails on a wrk error."""
    assert url.startswith("http://127.0.0.1:"), "loads target only the loopback interface"
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    secs = raw["duration_us"] / 1e6
    return WrkRun(
        side=side,
        requests=raw["requests"],
        seconds=round(secs, 2),
        requests_per_second=round(raw["requests"] / secs, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["errors"],
    )


@dataclass
class Side:
    """One side of a comparison: a name and how to run one round of it."""

    name: str
    run: Callable[[float], WrkRun]


def alternate(sides: Sequence[Side], rounds: int, seconds: float) -> dict[str, list[WrkRun]]:
    """A short warm-up per side, then `rounds` rounds, the order flipped every round (ABBA...),
    so drifting machine load falls on both sides alike."""
    for side in sides:
        side.run(1.0)
    out: dict[str, list[WrkRun]] = {s.name: [] for s in sides}
    for n in range(rounds):
        for side in sides if n % 2 == 0 else list(reversed(sides)):
            run = side.run(seconds)
            print(
                f"  round {n + 1} {side.name}: {run.requests_per_second:,.0f} req/s, "
                f"p50 {run.p50_ms:.1f} ms, {run.errors} errors",
                flush=True,
            )
            out[side.name].append(run)
    return out


def round_ratios(runs: dict[str, list[WrkRun]], top: str, base: str) -> list[float]:
    """Per-round throughput ratios top/base: each round's pair ran back to back."""
    return [
        round(t.requests_per_second / b.requests_per_second, 3)
        for t, b in zip(runs[top], runs[base], strict=True)
    ]


def wrk_summary(runs: dict[str, list[WrkRun]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """Table rows (median round per side) and the JSON of every round."""
    rows = []
    for name, side_runs in runs.items():
        mid = sorted(side_runs, key=lambda r: r.requests_per_second)[len(side_runs) // 2]
        rows.append(
            [
                name,
                mid.requests_per_second,
                mid.p50_ms,
                mid.p90_ms,
                mid.p99_ms,
                sum(r.errors for r in side_runs),
            ]
        )
    return rows, {k: [asdict(r) for r in v] for k, v in runs.items()}


WRK_HEADER = ["side", "req/s (median round)", "p50 ms", "p90 ms", "p99 ms", "errors"]


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


# ------------------------------------------------------------------ data


@dataclass
class Seed:
    """A human owner of project `bench`, and an agent member of it with an API key."""

    owner: Actor
    project_id: int
    agent_id: int
    api_key: str


async def seed(url: str) -> Seed:
    """Migrate, then the owner, the project and the agent, through the core services."""
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
        return Seed(owner, project.id, issued.worker.id, issued.api_key)
    finally:
        await db.close()

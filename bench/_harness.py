"""What the production-proof benches (agents, faults, replicas) share: the processes they run.

- `postgres()`: a PostgreSQL server, embedded (pgserver, in a temp dir this script owns, so it
  can be stopped with `pg_ctl stop -m immediate` and started again) or the one `--database-url`
  names; `fresh_database()` makes a database for one run on it and drops it afterwards.
- `serve()`: `taskflow serve` as a real subprocess on its own port (or, for local mode, the
  same `uvicorn --factory taskflow.server:factory` that `serve --no-auth` runs), ready to answer.
- `better_auth()`: a real Better Auth server (tests/better_auth.py), for humans with JWTs.
- `Checks`: the invariants a run asserts, printed one per line (`INVARIANT ok: ...`) so the CI
  test (tests/prod/test_prod_quick.py) can read them, and the exit status they imply.
- `machine()` and `write_result()`: the numbers, with the machine they came from, as JSON.

Nothing here is a mock: every check speaks HTTP to a server process or SQL to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.better_auth lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from taskflow.core.db import to_async_url  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
READY_TIMEOUT_S = 60.0
TASKFLOW_CLI = Path(sys.executable).with_name("taskflow")


# ------------------------------------------------------------------ PostgreSQL


def plain_dsn(url: str, database: str | None = None) -> str:
    """An asyncpg DSN (no `+asyncpg`) for the same server, optionally another database."""
    parsed = to_async_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


class EmbeddedPostgres:
    """A pgserver PostgreSQL in a temp dir that this process may crash and restart at will.

    pgserver starts it with `pg_ctl` listening on a Unix socket only; `stop_immediate` and
    `start` call the same bundled `pg_ctl` (as pgserver's system user when running as root), so
    the restarted server is the same cluster at the same address.
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' runtime-dir warning on headless boxes
            import pgserver

        self.tmp = Path(tempfile.mkdtemp(prefix="tf-prod-pg-"))
        self.server = pgserver.get_server(self.tmp / "pgdata", cleanup_mode="stop")
        uri = make_url(self.server.get_uri())
        self.socket_dir = str(uri.query["host"])
        self.url = uri.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=timeout)

    def stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: every backend killed at once, no checkpoint (a crash)."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """`pg_ctl start -w`: crash recovery replays the WAL, then the server accepts again."""
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.server.pgdata / "log"),
            "start",
        )

    def cpu_seconds(self) -> float:
        """CPU time used so far by the postmaster and every backend it runs."""
        return process_tree_cpu(self.server.get_pid())

    def close(self) -> None:
        """Stop the server (pgserver's own cleanup knows only the postmaster it started, not
        one `start` brought back after a crash) and delete its directory."""
        if (self.server.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._pg_ctl("-m", "fast", "-w", "stop")
        with contextlib.suppress(Exception):
            self.server.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres(database_url: str | None) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """(server URL, the embedded server or None): `database_url`'s server, or a new embedded one."""
    if database_url:
        yield database_url, None
        return
    embedded = EmbeddedPostgres()
    try:
        yield embedded.url, embedded
    finally:
        embedded.close()


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_dsn(server_url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def server_version(url: str) -> str:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return "PostgreSQL " + str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the server for one run (dropped at the end); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name}"))
    try:
        yield to_async_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# ------------------------------------------------------------------ servers


def process_tree_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process and its children, live or exited (PostgreSQL
    backends come and go with the pool's overflow connections), 0 if the process is gone."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error, TypeError):
        root = psutil.Process(pid)
        reaped = root.cpu_times()
        total += reaped.children_user + reaped.children_system
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running `taskflow serve` process."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        return process_tree_cpu(self.process.pid)

    def tracebacks(self) -> int:
        """How many tracebacks the server logged (a bug somewhere, whatever the client saw).

        When there are any, the log is kept (its path printed) for whoever looks into them."""
        count = self.logs().count("Traceback (most recent call")
        if count:
            kept = Path(tempfile.gettempdir()) / f"tf-{self.name}-{self.process.pid}.log"
            shutil.copyfile(self.log_path, kept)
            print(f"{self.name}: {count} tracebacks logged; log kept at {kept}", flush=True)
        return count


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base_url + "/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    server.process.kill()
    raise RuntimeError(f"{server.name} did not become ready:\n{server.logs()[-4000:]}")


@contextlib.contextmanager
def serve(
    name: str,
    database_url: str,
    *,
    auth_server_url: str | None = None,
    local_user: str | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Iterator[Server]:
    """`taskflow serve --host 127.0.0.1 --port P` with an auth server; in local mode (no auth
    server, `local_user` acting for token-less requests) the `uvicorn --factory
    taskflow.server:factory` that `serve --no-auth` runs, since --no-auth reads its user from
    `taskflow init` state this script does not create. Stopped with SIGTERM at exit."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix=f"tf-{name}-"))
    settings_env = {
        "DATABASE_URL": database_url,
        "TASKFLOW_DATA_DIR": str(data_dir),
        "TASKFLOW_PUBLIC_URL": base_url,
        "AUTH_SERVER_URL": auth_server_url or "",
        "TASKFLOW_LOCAL_USER": local_user or "",
        **(env or {}),
    }
    if auth_server_url:
        command = [str(TASKFLOW_CLI), "serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "taskflow.server:factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=data_dir,  # no stray .env from the caller's directory
            env={**os.environ, **settings_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, base_url, process, log_path)
    try:
        if wait:
            _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_ready(server: Server) -> None:
    """For servers started with `wait=False` (several booting at once)."""
    _wait_ready(server)


@contextlib.contextmanager
def better_auth() -> Iterator[Any]:
    """A real Better Auth server (EdDSA JWTs) on a free port: `.sign_up`, `.get_jwt`, `.stop`."""
    from tests.better_auth import start_better_auth

    with start_better_auth("EdDSA") as server:
        yield server


# ------------------------------------------------------------------ numbers and invariants


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _meminfo_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(database: str) -> dict[str, Any]:
    """Where the numbers came from: cores, memory, CPU, load, Python and the database."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": _meminfo_gib(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "database": database,
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {"bench": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


@dataclass
class Checks:
    """Named invariants; each prints as one `INVARIANT ok|FAILED: name: detail` line."""

    results: list[dict[str, Any]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"INVARIANT {'ok' if ok else 'FAILED'}: {name}" + (f": {detail}" if detail else ""))
        return ok

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results)

    def summary(self) -> str:
        failed = [r["name"] for r in self.results if not r["ok"]]
        if not failed:
            return f"ALL {len(self.results)} INVARIANTS HOLD"
        return f"{len(failed)} OF {len(self.results)} INVARIANTS FAILED: {', '.join(failed)}"


def finish(name: str, args: Any, checks: Checks, result: dict[str, Any]) -> int:
    """A production-proof bench's ending: save the numbers of a full run, print the verdict,
    and exit 0 only when every invariant held."""
    if not args.quick and not args.no_write:
        print(f"wrote {write_result(name, result)}")
    print()
    print(checks.summary())
    return 0 if checks.ok else 1

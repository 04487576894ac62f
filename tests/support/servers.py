"""Real processes for tests and benches: a PostgreSQL, a database per run, `taskflow serve`.

Plain helpers (no pytest), so bench/ scripts may import them too; tests never import bench/.

- `EmbeddedPostgres`: pgserver in a temp dir this process owns, so it can be crashed
  (`pg_ctl stop -m immediate`) and started again at the same address.
- `postgres()`: that, or the server a given URL names; `fresh_database()` makes one database for
  one run on it and drops it afterwards.
- `serve()`: the app `taskflow serve` runs (`uvicorn --factory taskflow.server:factory`, one
  worker) as a subprocess on a free loopback port, ready to answer; `uvicorn_app()` runs any
  other factory the same way (a bench's bare baseline).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from taskflow.core.db import to_async_url

READY_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


def plain_dsn(url: str, database: str | None = None) -> str:
    """An asyncpg/libpq DSN (no `+asyncpg`) for the same server, optionally another database."""
    parsed = to_async_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


class EmbeddedPostgres:
    """A pgserver PostgreSQL in a temp dir that this process may crash and restart at will.

    pgserver listens on a Unix socket only; `stop_immediate` and `start` call its bundled
    `pg_ctl` (as pgserver's system user when running as root), so the restarted server is the
    same cluster at the same address.
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' runtime-dir warning on headless boxes
            import pgserver

        self.tmp = Path(tempfile.mkdtemp(prefix="tf-pg-"))
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
        log = str(self.server.pgdata / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")

    def close(self) -> None:
        """Stop the server (and, should pgserver's cleanup not know it, a postmaster `start`
        brought back after a crash) and delete its directory."""
        with contextlib.suppress(Exception):
            self.server.cleanup()
        if (self.server.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._pg_ctl("-m", "fast", "-w", "stop")
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running uvicorn process on 127.0.0.1."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tracebacks(self) -> int:
        """How many tracebacks the server logged (a bug somewhere, whatever the client saw)."""
        return self.logs().count("Traceback (most recent call")

    def wait_ready(self, path: str = "/health/ready") -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"{self.name} did not become ready:\n{self.logs()[-4000:]}")


@contextlib.contextmanager
def uvicorn_app(
    name: str, factory: str, env: dict[str, str], *, ready_path: str = "/health/ready"
) -> Iterator[Server]:
    """`uvicorn --factory <factory>` (one worker, no access log) with `env` added, on a free
    loopback port, started in a temp dir (no stray .env) and stopped with SIGTERM at exit."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"tf-{name}-"))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--http",
        "taskflow.deadline:ReceiptDeadline",  # as `taskflow serve` runs it
        "--app-dir",
        str(ROOT),
    ]
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env={
                **os.environ,
                "TASKFLOW_DATA_DIR": str(data_dir),
                "TASKFLOW_PUBLIC_URL": f"http://127.0.0.1:{port}",
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    try:
        server.wait_ready(ready_path)
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


@contextlib.contextmanager
def serve(name: str, database_url: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """The app `taskflow serve` runs, on `database_url`, API keys only (no auth server, no local
    user), unless `env` says otherwise."""
    settings = {"DATABASE_URL": database_url, "AUTH_SERVER_URL": "", "TASKFLOW_LOCAL_USER": ""}
    with uvicorn_app(name, "taskflow.server:factory", {**settings, **(env or {})}) as server:
        yield server

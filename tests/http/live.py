"""A real uvicorn server in a subprocess, on a free loopback port, for tests that need HTTP.

It runs `uvicorn --factory taskflow.server:factory` exactly as `taskflow serve` does, with the
settings given as environment variables, and is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_SECONDS = 30.0


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        match = READY.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def start_uvicorn(
    target: str, env: dict[str, str], *, app_dir: Path | None = None, health: str = "/health"
) -> Iterator[LiveServer]:
    """Run `uvicorn --factory target` with `env` added to this process's environment."""
    log_file = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
        "--log-level",
        "info",
        "--http",
        "taskflow.deadline:ReceiptDeadline",  # as `taskflow serve` runs it
    ]
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
    )
    log_file.close()
    log_path = Path(log_file.name)
    try:
        port = _wait_for_port(process, log_path)
        server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
        if health:
            _wait_healthy(server.base_url + health)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def live_server(env: dict[str, str]) -> Iterator[LiveServer]:
    """The composed TaskFlow app, as `taskflow serve` runs it, ready to answer."""
    with start_uvicorn("taskflow.server:factory", env, health="/health/ready") as server:
        yield server


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")

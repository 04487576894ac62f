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
def live_server(env: dict[str, str], *, workers: int = 1) -> Iterator[LiveServer]:
    """Start the composed app under uvicorn with `env` added to this process's environment."""
    log_file = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "taskflow.server:factory",
        "--host", "127.0.0.1", "--port", "0", "--no-access-log", "--log-level", "info",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    full_env = {**os.environ, **env}
    process = subprocess.Popen(
        command, env=full_env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
    )
    log_file.close()
    log_path = Path(log_file.name)
    try:
        port = _wait_for_port(process, log_path)
        server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
        _wait_healthy(server.base_url)
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


def _wait_healthy(base_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} never became ready")

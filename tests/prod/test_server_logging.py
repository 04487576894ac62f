"""The served app logs plainly: a logged traceback must not stall every request.

The MCP SDK installs Rich (with rich tracebacks) on the root logger unless logging is set up
first; rendering one traceback that way held the event loop for about a second on a 2-core box,
and in the former fault bench a burst of them stalled all requests for up to 15 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import logging, time
from taskflow.server import factory
factory()
root = logging.getLogger()
print("handlers:", [type(h).__name__ for h in root.handlers])
try:
    raise RuntimeError("boom")
except RuntimeError:
    t = time.perf_counter()
    logging.getLogger("taskflow.http").exception("a logged traceback")
    print(f"seconds: {time.perf_counter() - t:.4f}")
"""


def test_the_server_factory_logs_plainly(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "AUTH_SERVER_URL": "", "TASKFLOW_LOCAL_USER": ""}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    handlers = done.stdout.split("handlers:")[1].splitlines()[0]
    assert "RichHandler" not in handlers and "StreamHandler" in handlers, handlers
    seconds = float(done.stdout.split("seconds:")[1].split()[0])
    assert seconds < 0.1, f"logging one traceback took {seconds:.3f} s"
    assert "Traceback (most recent call last)" in done.stderr  # still logged, plainly

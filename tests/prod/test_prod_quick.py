"""The production-proof benches, in their `--quick` form, so they cannot rot.

bench/agents.py, bench/faults.py and bench/replicas.py each start their own PostgreSQL, Better
Auth and `taskflow serve` processes and print one `INVARIANT ok|FAILED: ...` line per property
they assert. The three run at once (each is mostly waiting on its servers), in subprocesses
exactly as a person runs them; each test then checks its script's exit status and that the
properties it is there to prove were checked and held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
SCRIPTS = ("agents", "faults", "replicas")


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float

    def invariant(self, name: str) -> str:
        """The detail of the invariant whose name starts with `name`; fails if missing or not ok."""
        for line in self.output.splitlines():
            if line.startswith("INVARIANT ") and name in line:
                assert line.startswith("INVARIANT ok: "), line
                return line
        raise AssertionError(f"invariant {name!r} was not checked:\n{self.output[-3000:]}")


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    started = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in SCRIPTS
    }
    results = {}
    try:
        for name, proc in procs.items():
            remaining = max(1.0, TIMEOUT_S - (time.monotonic() - started))
            output, _ = proc.communicate(timeout=remaining)
            results[name] = Run(proc.returncode, output, time.monotonic() - started)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield results


def _passed(run: Run) -> None:
    assert run.returncode == 0, run.output[-4000:]
    assert "INVARIANTS HOLD" in run.output, run.output[-4000:]
    assert "INVARIANT FAILED" not in run.output


def test_many_agents(runs: dict[str, Run]) -> None:
    run = runs["agents"]
    _passed(run)
    for name in (
        "zero 5xx",
        "every call answered",
        "work got done",
        "zero lost audit entries",
        "zero duplicated audit entries",
        "audit entries equal successful operations, per action",
        "refused requests wrote nothing",
        "every task change has its audit entry",
        "audit chain verifies",
        "no task claimed twice",
    ):
        run.invariant(name)
    assert "p99 ms" in run.output and "calls/s" in run.output


def test_database_crash_and_auth_outage(runs: dict[str, Run]) -> None:
    run = runs["faults"]
    _passed(run)
    for name in (
        "no 5xx but 503",
        "every request answered",
        "never a 401",
        "while down: every answer is 'unavailable'",
        "while down: REST 503 problem+json",
        "while down: MCP isError 'database unavailable'",
        "no request around the outage took longer than",
        "the same server processes recover by themselves",
        "auth server gone: cached keys keep JWTs working",
        "changes failed by the outage retry cleanly",
        "no tracebacks in the server logs",
        "audit: all of each change or none of it",
        "no task change without its audit entry",
        "audit chain verifies after the crash",
    ):
        run.invariant(name)


def test_two_replicas_one_state(runs: dict[str, Run]) -> None:
    run = runs["replicas"]
    _passed(run)
    for name in (
        "two replicas boot together",
        "created on A (REST), read on B (MCP)",
        "updated on B with A's version, read on A",
        "stale write on A refused",
        "REST Idempotency-Key on A, retried on B",
        "MCP idempotency_key on B, retried on A",
        "alternating rounds",
        "concurrent claims over both replicas",
        "audit entries equal successful changes",
        "audit chain verifies",
    ):
        run.invariant(name)

"""A runaway agent does not slow the others: with the default limits, one agent making 5,000
writes in a loop (another process, as the probe did) is refused once past its burst, and a
bystander's p95 latency stays within 2x of what it was without the flood."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from tests.http.conftest import register_agent
from tests.support.servers import serve

pytestmark = pytest.mark.slow

FLOOD = 5000
SAMPLES = 80  # per run; three runs stay inside the bystander's burst and refill

_FLOODER = """
import collections, json, sys, time, httpx
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = collections.Counter()
started = time.monotonic()
with httpx.Client(headers={"Authorization": "Bearer " + token}, timeout=30) as http:
    for i in range(n):
        seen[http.post(url, json={"title": f"flood {i}"}).status_code] += 1
        if i == 400:
            print("flooding", flush=True)
print(json.dumps({"seen": seen, "seconds": time.monotonic() - started}), flush=True)
"""


async def _p95(http: httpx.AsyncClient, url: str, label: str) -> float:
    took = []
    for n in range(SAMPLES):
        started = time.perf_counter()
        answer = await http.post(url, json={"title": f"{label} {n}"})
        took.append(time.perf_counter() - started)
        assert answer.status_code == 201, answer.text
        await asyncio.sleep(0.01)
    return statistics.quantiles(took, n=20)[-1]


async def test_a_flooding_agent_does_not_slow_another(
    db: Database, db_url: str, owner: Actor
) -> None:
    flooder = await register_agent(db, owner, "@runaway", project_role=Role.MEMBER)
    bystander = await register_agent(db, owner, "@bystander", project_role=Role.MEMBER)
    with serve("flood", db_url) as server:
        url = f"{server.base_url}/api/projects/default/tasks"
        async with httpx.AsyncClient(headers=bystander.headers, timeout=30) as http:
            for _ in range(10):  # warm up: connections, prepared statements
                await http.get(f"{server.base_url}/api/tasks")
            quiet = await _p95(http, url, "quiet")
            flood = subprocess.Popen(  # noqa: ASYNC220 (started once, read in a thread)
                [sys.executable, "-c", _FLOODER, url, flooder.token, str(FLOOD)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert flood.stdout is not None
                line = await asyncio.to_thread(flood.stdout.readline)  # past its burst now
                assert line.strip() == "flooding"
                loaded = await _p95(http, url, "loaded")
                still_flooding = flood.poll() is None
                out, _ = await asyncio.to_thread(flood.communicate, timeout=60)
            finally:
                if flood.poll() is None:
                    flood.kill()
            # Unloaded again: the baseline is both quiet runs (the machine's own noise).
            quiet = (quiet + await _p95(http, url, "quiet again")) / 2
    report = json.loads(out.strip().splitlines()[-1])
    seen = {int(k): v for k, v in report["seen"].items()}
    print(f"bystander p95 {quiet * 1000:.1f} ms quiet, {loaded * 1000:.1f} ms flooded; {report}")
    assert still_flooding, "the flood ended before the bystander's loaded run did"
    assert loaded <= 2 * quiet, f"bystander p95 {quiet * 1000:.1f} ms -> {loaded * 1000:.1f} ms"
    # Past its burst (200) the flooder got 20 writes a second (1,200 a minute), the rest 429.
    assert set(seen) <= {201, 429} and sum(seen.values()) == FLOOD, seen
    assert seen[201] <= 200 + 20 * report["seconds"] + 20, report

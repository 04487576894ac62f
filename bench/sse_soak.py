"""SSE soak: C clients follow `GET /api/events` for D seconds while comments arrive at R per
second; every client must get every event exactly once, in order, and the server's memory stay
flat.

TaskFlow is the app `taskflow serve` runs (one uvicorn worker), on a fresh database; the
clients are httpx streams in this process (wrk cannot read an event stream), one connection
each, with the agent's API key. A paced writer posts comments over REST
(`POST /api/tasks/{id}/comments`) and notes when each answer came back; each client notes when
each event arrived. Reported:

- **delivery**: events each client received vs events written (the ratio, 1.0 = every client
  got every event), missing and duplicated ones, and whether each client's order is the
  writer's;
- **latency**: from the write's answer to an event's arrival, over all clients (p50/p99/max);
- **memory**: the server's RSS once all clients are connected, its peak, and at the end of
  the soak, sampled every 0.5 s (`/proc/<pid>/status`); "flat" means the last quarter's mean is
  within 10% (and 20 MB) of the first quarter's.

    uv run python bench/sse_soak.py                 # 200 clients, 60 s, 10 comments/s
    uv run python bench/sse_soak.py --quick         # 20 clients, 3 s (CI)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import parser, print_table, quick, ratio_line, seed, write_result
from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.support.servers import fresh_database, postgres, serve
from tests.support.sse import SseReader

DRAIN_S = 10.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def make_task(url: str, owner: Any) -> int:
    db = Database.from_url(url, pool_size=2)
    try:
        made = await tasks.create_task(db, owner, CreateTask(project="bench", title="soak"))
        return made.task.id
    finally:
        await db.close()


async def soak(base_url: str, key: str, task_id: int, pid: int, args: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=8)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(pid))
            time.sleep(0.5)

    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as http,
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as writer,
    ):
        readers = [SseReader(http) for _ in range(args.clients)]
        for batch in range(0, len(readers), 50):
            await asyncio.gather(*(r.__aenter__() for r in readers[batch : batch + 50]))
        assert all(r.status == 200 for r in readers), [r.status for r in readers]
        rss_connected = rss_mb(pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        written: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        while loop.time() - started < args.duration:
            answer = await writer.post(f"/api/tasks/{task_id}/comments", json={"body": f"soak {n}"})
            answer.raise_for_status()
            written[f"soak {n}"] = loop.time()
            n += 1
            await asyncio.sleep(max(0.0, started + n / args.rate - loop.time()))
        stop.set()
        sampler.join()
        rss_end = rss_mb(pid)
        got: list[list[tuple[str, float]]] = []
        deadline = loop.time() + DRAIN_S
        for r in readers:
            seen: list[tuple[str, float]] = []
            while len(seen) < len(written) and loop.time() < deadline:
                try:
                    event = await r.next(max(0.01, deadline - loop.time()))
                except TimeoutError:
                    break
                seen.append((event.data["details"]["body"], event.received))
            got.append(seen)
        extra = 0
        for r in readers:
            extra += len(await r.quiet(0.05))
            await r.close()
    order = list(written)
    latencies = [
        (at - written[body]) * 1000 for seen in got for body, at in seen if body in written
    ]
    delivered = sum(len(seen) for seen in got)
    missing = sum(len(set(order) - {b for b, _ in seen}) for seen in got)
    duplicates = sum(len(seen) - len({b for b, _ in seen}) for seen in got) + extra
    in_order = all([b for b, _ in seen] == order for seen in got)
    quarter = max(1, len(samples) // 4)
    first_q = statistics.mean(samples[:quarter]) if samples else rss_connected
    last_q = statistics.mean(samples[-quarter:]) if samples else rss_end
    growth = last_q - first_q
    return {
        "clients": args.clients,
        "seconds": args.duration,
        "rate_per_s": args.rate,
        "events_written": len(written),
        "events_delivered": delivered,
        "expected": len(written) * args.clients,
        "missing": missing,
        "duplicates": duplicates,
        "every_client_in_order": in_order,
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p99": round(statistics.quantiles(latencies, n=100)[98], 1)
            if len(latencies) > 1
            else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
        "rss_mb": {
            "connected": round(rss_connected, 1),
            "peak": round(max(samples or [rss_end]), 1),
            "end": round(rss_end, 1),
            "first_quarter_mean": round(first_q, 1),
            "last_quarter_mean": round(last_q, 1),
        },
        "memory_flat": growth <= max(20.0, 0.1 * first_q),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=60.0, rounds=1)
    p.add_argument("--clients", type=int, default=200, help="SSE clients")
    p.add_argument("--rate", type=float, default=10.0, help="comments written per second")
    args = quick(p.parse_args(argv), clients=20)
    if args.quick:
        args.duration = 3.0
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_sse") as url,
    ):
        s = asyncio.run(seed(url))
        task_id = asyncio.run(make_task(url, s.owner))
        with serve("taskflow", url) as tf:
            print(
                f"{args.clients} SSE clients for {args.duration:.0f} s, "
                f"{args.rate:g} comments/s ...",
                flush=True,
            )
            result = asyncio.run(soak(tf.base_url, s.api_key, task_id, tf.process.pid, args))
            tracebacks = tf.tracebacks()
    ratio = result["events_delivered"] / result["expected"] if result["expected"] else 0.0
    lat, rss = result["latency_ms"], result["rss_mb"]
    print_table(
        f"{result['clients']} SSE clients, {result['seconds']:.0f} s",
        ["clients", "written", "delivered", "missing", "dupes", "p50 ms", "p99 ms", "max ms"],
        [
            [
                result["clients"],
                result["events_written"],
                result["events_delivered"],
                result["missing"],
                result["duplicates"],
                lat["p50"] or 0.0,
                lat["p99"] or 0.0,
                lat["max"] or 0.0,
            ]
        ],
    )
    print_table(
        "server RSS (MB)",
        ["connected", "peak", "end", "first quarter", "last quarter", "flat"],
        [
            [
                rss["connected"],
                rss["peak"],
                rss["end"],
                rss["first_quarter_mean"],
                rss["last_quarter_mean"],
                "yes" if result["memory_flat"] else "NO",
            ]
        ],
    )
    line = ratio_line("events delivered / expected", ratio, "== 1.0, each once, in order")
    write_result(
        "sse_soak",
        args,
        {**result, "ratio": round(ratio, 4), "summary": line, "server_tracebacks": tracebacks},
    )
    ok = (
        ratio == 1.0
        and result["missing"] == 0
        and result["duplicates"] == 0
        and result["every_client_in_order"]
        and tracebacks == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

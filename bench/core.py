"""Core benchmark: what the service layer costs, how fast big subtrees read, how fast the audit
log verifies, and how fast the embedded database starts. Not a test: prints a table and writes
JSON (bench/results/core.json).

    uv run python bench/core.py                      # embedded PostgreSQL in a temp dir, ~1-2 min
    uv run python bench/core.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    uv run python bench/core.py --subtrees 1000,10000,100000,1000000 --audit-entries 1000000

With --database-url the bench creates (and drops) its own database on that server, so the URL
needs rights to CREATE DATABASE.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import plain_dsn
from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.config import Settings
from taskflow.core.db import Database, open_database, to_async_url
from taskflow.core.domain import WorkerType
from taskflow.core.schemas import CreateHuman, CreateProject, CreateTask
from taskflow.core.services import projects, task_queries, tasks, workers

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"


# ------------------------------------------------------------------ database


class Server:
    """The server the bench runs on: the given URL, or an embedded one in a temp dir."""

    def __init__(self, url: str | None) -> None:
        self.tmp: Path | None = None
        self.pg: Any = None
        if url is None:
            import pgserver

            self.tmp = Path(tempfile.mkdtemp(prefix="tf-bench-"))
            self.pg = pgserver.get_server(self.tmp / "pgdata", cleanup_mode="stop")
            url = self.pg.get_uri()
        self.url = str(url)
        self.name = f"tf_bench_{os.getpid()}"

    async def create(self) -> str:
        admin = await asyncpg.connect(plain_dsn(self.url, "postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {self.name}")
            await admin.execute(f"CREATE DATABASE {self.name}")
        finally:
            await admin.close()
        return to_async_url(self.url).set(database=self.name).render_as_string(hide_password=False)

    async def drop(self) -> None:
        admin = await asyncpg.connect(plain_dsn(self.url, "postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        finally:
            await admin.close()

    def close(self) -> None:
        if self.pg is not None:
            self.pg.cleanup()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ measurements


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


_RAW_TASK = """
    INSERT INTO tasks (project_id, title, description, priority, tags, created_by_id)
    VALUES ($1, $2, '', 'medium', '{}', $3) RETURNING id
"""


def _positional(sql: str, names: list[str]) -> str:
    for i, name in enumerate(names, 1):
        sql = sql.replace(f":{name}", f"${i}")
    return sql


_APPEND_NAMES = [
    "entity_type",
    "entity_id",
    "project_id",
    "task_id",
    "action",
    "actor_id",
    "actor_handle",
    "actor_type",
    "details",
    "request_id",
    "via",
    "created_at",
    "payload",
    "genesis",
]
_RAW_AUDIT = _positional(str(audit._APPEND), _APPEND_NAMES)


async def bench_creation(db: Database, dsn: str, actor: Actor, project_id: int, n: int) -> dict:
    """The same rows (task + audit entry with its chained hash) through the service and raw."""

    async def service() -> None:
        for i in range(n):
            await tasks.create_task(db, actor, CreateTask(title=f"svc {i}", project="bench"))

    conn = await asyncpg.connect(dsn)

    async def raw() -> None:
        for i in range(n):
            async with conn.transaction():
                task_id = await conn.fetchval(_RAW_TASK, project_id, f"raw {i}", actor.worker_id)
                fields = {
                    "entity_type": "task",
                    "entity_id": task_id,
                    "project_id": project_id,
                    "task_id": task_id,
                    "action": "created",
                    "actor_id": actor.worker_id,
                    "actor_handle": actor.handle,
                    "actor_type": "human",
                    "details": audit.canonical_details({"new": {"title": f"raw {i}"}}),
                    "request_id": None,
                    "via": "core",
                    "created_at": datetime.now(UTC),
                }
                params = {**fields, "payload": audit.payload(**fields), "genesis": audit.GENESIS}
                await conn.fetchval(_RAW_AUDIT, *(params[k] for k in _APPEND_NAMES))

    try:
        await service()  # warm-up: connections, prepared statements, imports
        await raw()
        service_s, raw_s = [], []
        for _ in range(3):  # interleaved, so drift hits both alike
            service_s.append(await timed(service))
            raw_s.append(await timed(raw))
    finally:
        await conn.close()
    svc, rw = statistics.median(service_s), statistics.median(raw_s)
    return {
        "tasks": n,
        "service_ms_per_task": 1000 * svc / n,
        "raw_ms_per_task": 1000 * rw / n,
        "ratio": svc / rw,
    }


_TREE = """
    INSERT INTO tasks (id, project_id, parent_id, title, status, progress_percent, created_by_id)
    SELECT $1 + g, $2, CASE WHEN g = 1 THEN NULL ELSE $1 + (g - 2) / $3 + 1 END, 'node ' || g,
           CASE WHEN g % 7 = 0 THEN 'completed' ELSE 'pending' END, g % 101, $4
    FROM generate_series(1, $5) AS g
"""


async def bench_subtrees(
    db: Database, dsn: str, actor: Actor, project_id: int, sizes: list[int], fanout: int
) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    out = []
    try:
        for n in sizes:
            base = await conn.fetchval(
                "SELECT setval(pg_get_serial_sequence('tasks', 'id'), "
                "(SELECT coalesce(max(id), 0) FROM tasks) + $1) - $1",
                n,
            )
            await conn.execute(_TREE, base, project_id, fanout, actor.worker_id, n)
            await conn.execute("ANALYZE tasks")
            root = base + 1
            await task_queries.get_task(db, actor, root)  # warm
            times = [
                await timed(lambda r=root: task_queries.get_task(db, actor, r)) for _ in range(3)
            ]
            detail = await task_queries.get_task(db, actor, root)
            assert len(detail.subtree) == n - 1
            out.append({"nodes": n, "fanout": fanout, "seconds": statistics.median(times)})
    finally:
        await conn.close()
    return out


async def seed_audit(dsn: str, entries: int, chain_length: int = 10) -> None:
    """Valid chains written with COPY (hashes computed as `audit.record` would)."""
    now = datetime.now(UTC)
    rows, heads = [], []
    first_entity = 10_000_000
    for c in range(entries // chain_length):
        prev = audit.GENESIS
        entity = first_entity + c
        for s in range(1, chain_length + 1):
            fields = {
                "entity_type": "task",
                "entity_id": entity,
                "project_id": 1,
                "task_id": entity,
                "action": "progressed",
                "actor_id": 1,
                "actor_handle": "@bench",
                "actor_type": "agent",
                "details": audit.canonical_details(
                    {"changes": {"progress_percent": {"old": s - 1, "new": s}}, "note": "ok ü"}
                ),
                "request_id": f"req-{c}-{s}",
                "via": "mcp",
                "created_at": now + timedelta(microseconds=c * chain_length + s),
            }
            digest = hashlib.sha256(prev + audit.payload(**fields)).digest()
            rows.append(
                (
                    fields["entity_type"],
                    entity,
                    s,
                    1,
                    entity,
                    fields["action"],
                    1,
                    "@bench",
                    "agent",
                    fields["details"],
                    fields["request_id"],
                    "mcp",
                    fields["created_at"],
                    prev,
                    digest,
                )
            )
            prev_of_last, prev = prev, digest
        heads.append(("task", entity, chain_length, prev, prev_of_last))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "audit_log",
            records=rows,
            columns=[
                "entity_type",
                "entity_id",
                "seq",
                "project_id",
                "task_id",
                "action",
                "actor_id",
                "actor_handle",
                "actor_type",
                "details",
                "request_id",
                "via",
                "created_at",
                "prev_hash",
                "hash",
            ],
        )
        await conn.copy_records_to_table(
            "audit_heads",
            records=heads,
            columns=["entity_type", "entity_id", "seq", "head_hash", "prev_hash"],
        )
        await conn.execute("ANALYZE audit_log")
    finally:
        await conn.close()


async def bench_verify(db: Database, dsn: str, entries: int) -> dict:
    await seed_audit(dsn, entries)
    await audit.verify(db)  # warm the cache
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        result = await audit.verify(db)
        runs.append(time.perf_counter() - start)
        assert result.ok, result.problems
    seconds = statistics.median(runs)
    digest_s = await timed(lambda: audit.digest(db))
    return {
        "entries": result.entries_checked,
        "chains": result.chains_checked,
        "seconds": seconds,
        "entries_per_second": result.entries_checked / seconds,
        "digest_seconds": digest_s,
    }


_STARTUP = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from taskflow.core.config import Settings  # noqa: E402
from taskflow.core.db import open_database
t1 = time.perf_counter()
async def main():
    db = await open_database(Settings(taskflow_data_dir=sys.argv[1], database_url=None))
    t2 = time.perf_counter()
    await db.close()
    return t2
t2 = asyncio.run(main())
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1}))
"""


def bench_embedded_startup(runs: int = 3) -> dict:
    """First run (initdb + migrate) and later runs on the existing data dir, each a new process
    whose pgserver stops the server at exit, as a CLI invocation would."""
    tmp = Path(tempfile.mkdtemp(prefix="tf-embedded-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_POOLED")}

    def once() -> dict:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _STARTUP, str(tmp)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
        got["process_s"] = time.perf_counter() - start
        return got

    try:
        first = once()
        later = [once() for _ in range(runs)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "first_open_s": first["open_s"],
        "open_s": statistics.median(r["open_s"] for r in later),
        "process_s": statistics.median(r["process_s"] for r in later),
        "import_s": statistics.median(r["import_s"] for r in later),
    }


# ------------------------------------------------------------------ main


PARTS = ("creation", "subtrees", "verify", "embedded")


async def run(args: argparse.Namespace) -> dict:
    results: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.parts & {"creation", "subtrees", "verify"}:
        await run_on_server(args, results)
    if "embedded" in args.parts:
        print("embedded startup ...", flush=True)
        results["embedded"] = bench_embedded_startup()
    return results


async def run_on_server(args: argparse.Namespace, results: dict[str, Any]) -> None:
    server = Server(args.database_url)
    results["server"] = (
        "embedded (pgserver)"
        if args.database_url is None
        else make_url(args.database_url).render_as_string(hide_password=True)
    )
    try:
        url = await server.create()
        dsn = plain_dsn(url)
        db = await open_database(Settings(database_url=url), pool_size=5)
        try:
            conn = await asyncpg.connect(dsn)
            results["postgres"] = await conn.fetchval("SHOW server_version")
            await conn.close()
            who = await workers.create_human(db, CreateHuman(handle="@bench", name="Bench"))
            actor = Actor(worker_id=who.id, handle=who.handle, type=WorkerType.HUMAN)
            project = await projects.create_project(
                db, actor, CreateProject(slug="bench", name="Bench")
            )
            if "creation" in args.parts:
                print("creation ...", flush=True)
                results["creation"] = await bench_creation(db, dsn, actor, project.id, args.tasks)
            if "subtrees" in args.parts:
                print("subtrees ...", flush=True)
                results["subtrees"] = await bench_subtrees(
                    db, dsn, actor, project.id, args.subtrees, args.fanout
                )
            if "verify" in args.parts:
                print("audit verify ...", flush=True)
                results["verify"] = await bench_verify(db, dsn, args.audit_entries)
        finally:
            await db.close()
            await server.drop()
    finally:
        server.close()


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if "creation" in r:
        c = r["creation"]
        rows += [
            ("create task + audit, service", f"{c['service_ms_per_task']:.2f} ms/task", ""),
            ("create task + audit, raw asyncpg", f"{c['raw_ms_per_task']:.2f} ms/task", ""),
            ("  service / raw", f"{c['ratio']:.2f}x", f"{c['tasks']} tasks, median of 3"),
        ]
    for s in r.get("subtrees", []):
        rows.append(
            (
                f"get_task subtree {s['nodes']:,} nodes",
                f"{s['seconds'] * 1000:.0f} ms",
                f"fanout {s['fanout']}, one query",
            )
        )
    if "verify" in r:
        v = r["verify"]
        target = "ok" if v["entries_per_second"] >= 100_000 else "BELOW 100k/s target"
        rows += [
            (
                "audit verify",
                f"{v['entries_per_second']:,.0f} entries/s",
                f"{v['entries']:,} entries, {target}",
            ),
            ("audit digest", f"{v['digest_seconds'] * 1000:.0f} ms", f"{v['chains']:,} chains"),
        ]
    if "embedded" in r:
        e = r["embedded"]
        target = "ok" if e["open_s"] < 2 else "ABOVE 2 s target"
        rows += [
            ("embedded open, existing data dir", f"{e['open_s']:.2f} s", target),
            (
                "  whole process (imports + open)",
                f"{e['process_s']:.2f} s",
                f"first run (initdb) {e['first_open_s']:.2f} s",
            ),
        ]
    return rows


def print_table(r: dict) -> None:
    rows = table_rows(r)
    width = max(len(a) for a, _, _ in rows)
    server = r.get("server", "no server")
    print(f"\nTaskFlow core bench: PostgreSQL {r.get('postgres', '?')} ({server})")
    for a, b, note in rows:
        print(f"  {a:<{width}}  {b:>22}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", help="a server to use (default: embedded, temp dir)")
    parser.add_argument("--tasks", type=int, default=300, help="tasks per creation run")
    parser.add_argument(
        "--subtrees", default="1000,10000,100000", help="comma-separated subtree sizes"
    )
    parser.add_argument("--fanout", type=int, default=10, help="children per node in subtrees")
    parser.add_argument("--audit-entries", type=int, default=300_000)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which to run, comma-separated: {PARTS}"
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.subtrees = [int(s) for s in args.subtrees.split(",") if s]
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if unknown := args.parts - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    results = asyncio.run(run(args))
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

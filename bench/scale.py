"""Scale bench: do reads stay fast with 1,000,000 tasks and 5,000,000 audit entries? Not a test:
prints a table and writes JSON (bench/results/scale.json).

    uv run python bench/scale.py                  # 1M tasks, 5M audit entries: ~10 min on 2 cores
    uv run python bench/scale.py --quick          # 20k tasks, 100k entries: seconds (CI smoke)
    uv run python bench/scale.py --tasks 200000 --audit 1000000 --database-url postgresql://...

The data goes straight into the schema with INSERT ... SELECT generate_series (never through the
API): tasks in two projects (the bench user belongs to one), the first `--subtree` of them one tree
(fanout 10) and the rest top-level; audit entries as one chain per task (created, then progressed),
their hashes computed by PostgreSQL with the very payload `audit.verify` rebuilds, so the whole
log verifies. Measured through the core services, as every surface calls them:

- `task_queries.list_tasks` page 1 vs page `--far-page` (keyset cursor), sort created and priority;
- `history.list_audit` page 1 vs page `--far-page`;
- `task_queries.get_task` on the root of the subtree: time, and the SQL statements it sent (one);
- `audit.verify` over the whole log: entries per second.

The default server is an embedded PostgreSQL in a temp dir (made durable-less for the load: fsync
off); with --database-url the bench creates and drops its own database there and changes no
server setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    RESULTS_DIR,
    fresh_database,
    machine,
    plain_dsn,
    postgres,
    server_version,
)
from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.config import Settings
from taskflow.core.db import Database, open_database
from taskflow.core.domain import WorkerType
from taskflow.core.schemas import AuditFilter, CreateHuman, CreateProject, TaskFilter
from taskflow.core.services import history, projects, task_queries, workers

PAGE = 50  # the services' default page size
FANOUT = 10
CHUNK = 250_000  # rows per INSERT ... SELECT, so progress shows

# ------------------------------------------------------------------ data


_TASKS = """
    INSERT INTO tasks (id, project_id, parent_id, title, status, priority, progress_percent,
                       tags, created_by_id, created_at, updated_at)
    SELECT g,
           CASE WHEN g > $3::bigint AND g % 10 = 0 THEN $2::bigint ELSE $1::bigint END,
           CASE WHEN g = 1 OR g > $3::bigint THEN NULL ELSE (g - 2) / $4::bigint + 1 END,
           'task ' || g,
           (ARRAY['pending', 'in_progress', 'review', 'completed', 'blocked'])[g % 5 + 1],
           (ARRAY['low', 'medium', 'high', 'critical'])[(g * 7) % 4 + 1],
           CASE WHEN g % 5 = 3 THEN 100 ELSE g % 100 END,
           CASE WHEN g % 3 = 0 THEN ARRAY['backend'] ELSE ARRAY['frontend', 'ux'] END,
           $5::bigint,
           $6::timestamptz + g * interval '1 second',
           $6::timestamptz + g * interval '1 second'
    FROM generate_series($7::bigint, $8::bigint) AS g
"""

# The payload `audit.payload()` hashes, spelt in SQL exactly as `audit._VERIFY_SQL` rebuilds it
# (head, canonical details, tail); the test of that query holds the spellings together.
_PAYLOAD = """
    concat_ws(chr(31), 'task', e.id::text, e.project_id::text, e.id::text, e.action,
              e.actor_id::text, e.actor_handle, 'human', '')
    || e.details
    || concat_ws(chr(31), '', e.request_id, 'mcp',
                 to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00')
"""

# Level k holds the k-th entry of every chain with at least k entries; its previous hash is the
# (k-1)-th entry's (or the genesis). Entry number n = (k - 1) * tasks + task id sets its time.
_AUDIT_LEVEL = f"""
    WITH e AS (
        SELECT t.id, t.project_id,
               CASE WHEN $1::int = 1 THEN 'created' ELSE 'progressed' END AS action,
               $2::bigint AS actor_id, '@bench'::text AS actor_handle,
               CASE WHEN $1::int = 1
                    THEN '{{"new":{{"title":"' || t.title || '"}}}}'
                    ELSE '{{"changes":{{"progress_percent":{{"new":' || ($1::int * 7 % 101)
                         || ',"old":' || (($1::int - 1) * 7 % 101) || '}}}}}}'
               END AS details,
               'bench-' || $1::int || '-' || t.id AS request_id,
               $3::timestamptz + (($1::int - 1) * $4::bigint + t.id) * interval '10 milliseconds'
                   AS created_at,
               coalesce(p.hash, $5::bytea) AS prev_hash
        FROM tasks t
        LEFT JOIN audit_log p
               ON $1::int > 1 AND p.entity_type = 'task' AND p.entity_id = t.id
              AND p.seq = $1::int - 1
        WHERE t.id BETWEEN $6::bigint AND $7::bigint
    )
    INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, actor_id,
                           actor_handle, actor_type, details, request_id, via, created_at,
                           prev_hash, hash)
    SELECT 'task', e.id, $1::int, e.project_id, e.id, e.action, e.actor_id, e.actor_handle, 'human',
           e.details::jsonb, e.request_id, 'mcp', e.created_at, e.prev_hash,
           sha256(e.prev_hash || convert_to({_PAYLOAD}, 'UTF8'))
    FROM e
    ORDER BY e.id
"""

_AUDIT_HEADS = """
    INSERT INTO audit_heads (entity_type, entity_id, seq, head_hash, prev_hash)
    SELECT DISTINCT ON (entity_id) 'task', entity_id, seq, hash, prev_hash
    FROM audit_log WHERE entity_type = 'task'
    ORDER BY entity_id, seq DESC
"""


def _ranges(first: int, last: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    start = first
    while start <= last:
        yield start, min(last, start + size - 1)
        start += size


async def fast_load_settings(dsn: str) -> None:
    """The throwaway embedded server needs no durability while the bench loads it."""
    conn = await asyncpg.connect(dsn)
    try:
        for setting, value in (
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_wal_size", "'8GB'"),
        ):
            await conn.execute(f"ALTER SYSTEM SET {setting} = {value}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def load(dsn: str, *, actor: Actor, bench_id: int, other_id: int, args: Any) -> dict:
    """Tasks, then audit chains level by level, then the chain heads; returns the seconds."""
    conn = await asyncpg.connect(dsn)
    took: dict[str, float] = {}
    try:
        await conn.execute("SET synchronous_commit = off")
        start_at = await conn.fetchval(
            "SELECT date_trunc('day', now()) - interval '60 days' - $1 * interval '1 second'",
            args.tasks,
        )
        t0 = time.perf_counter()
        for lo, hi in _ranges(1, args.tasks):
            await conn.execute(
                _TASKS, bench_id, other_id, args.subtree, FANOUT, actor.worker_id, start_at, lo, hi
            )
            _progress(f"tasks {hi:,}/{args.tasks:,}")
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('tasks', 'id'), $1::bigint)", args.tasks
        )
        took["tasks_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        done, level = 0, 0
        while done < args.audit:
            level += 1
            count = min(args.tasks, args.audit - done)
            for lo, hi in _ranges(1, count):
                await conn.execute(
                    _AUDIT_LEVEL,
                    level,
                    actor.worker_id,
                    start_at,
                    args.tasks,
                    audit.GENESIS,
                    lo,
                    hi,
                )
                _progress(f"audit {done + hi:,}/{args.audit:,}")
            done += count
        await conn.execute(_AUDIT_HEADS)
        took["audit_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE tasks")
        await conn.execute("VACUUM ANALYZE audit_log")
        await conn.execute("VACUUM ANALYZE audit_heads")
        took["vacuum_analyze_s"] = time.perf_counter() - t0
        took["levels"] = level
    finally:
        await conn.close()
    print(file=sys.stderr)
    return took


def _progress(text: str) -> None:
    print(f"\r  loading: {text}          ", end="", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ measurements


async def p50_ms(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    await fn()  # warm: connection, plan, cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


_SORT_KEYS = {
    "created": "created_at",
    "priority": "CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
    "WHEN 'low' THEN 3 ELSE 4 END",
}


async def task_cursor(dsn: str, project_id: int, sort: str, page: int) -> str:
    """The cursor a client holds after reading pages 1..page-1: the last row of page-1."""
    conn = await asyncpg.connect(dsn)
    try:
        key = _SORT_KEYS[sort]
        row = await conn.fetchrow(
            f"SELECT {key} AS value, id FROM tasks WHERE project_id = $1 "
            f"ORDER BY {key}, id OFFSET $2 LIMIT 1",
            project_id,
            (page - 1) * PAGE - 1,
        )
    finally:
        await conn.close()
    return task_queries.encode_cursor(sort, row["value"], row["id"])


async def audit_cursor(dsn: str, actor: Actor, page: int) -> str:
    """The same for the audit trail: entries of the actor's projects and of no project."""
    conn = await asyncpg.connect(dsn)
    try:
        entry = await conn.fetchval(
            "SELECT id FROM audit_log WHERE project_id IS NULL OR project_id IN "
            "(SELECT project_id FROM project_members WHERE worker_id = $1) "
            "ORDER BY id DESC OFFSET $2 LIMIT 1",
            actor.worker_id,
            (page - 1) * PAGE - 1,
        )
    finally:
        await conn.close()
    return str(entry)


async def walk_to(fetch: Callable[[str | None], Awaitable[Any]], page: int) -> str | None:
    """Follow next_cursor from page 1 to page-1, as a client would; returns the cursor."""
    cursor = None
    for _ in range(page - 1):
        cursor = (await fetch(cursor)).next_cursor
        assert cursor is not None, "ran out of pages"
    return cursor


async def measure_lists(db: Database, dsn: str, actor: Actor, bench_id: int, args: Any) -> dict:
    out: dict[str, Any] = {"page_size": PAGE, "far_page": args.far_page}
    for sort in ("created", "priority"):

        def fetch(cursor: str | None, sort: str = sort) -> Awaitable[Any]:
            f = TaskFilter(project="bench", sort=sort, limit=PAGE, cursor=cursor)
            return task_queries.list_tasks(db, actor, f)

        far = await task_cursor(dsn, bench_id, sort, args.far_page)
        if args.walk:  # the shortcut must be the cursor a client would really hold
            assert await walk_to(fetch, args.far_page) == far, f"cursor mismatch ({sort})"
        first_page, far_page = await fetch(None), await fetch(far)
        assert len(first_page.items) == len(far_page.items) == PAGE
        out[f"tasks_{sort}"] = {
            "page_1_ms": await p50_ms(lambda f=fetch: f(None), args.runs),
            "far_page_ms": await p50_ms(lambda f=fetch, c=far: f(c), args.runs),
        }

    def fetch_audit(cursor: str | None) -> Awaitable[Any]:
        return history.list_audit(db, actor, AuditFilter(limit=PAGE, cursor=cursor))

    far = await audit_cursor(dsn, actor, args.far_page)
    if args.walk:
        assert await walk_to(fetch_audit, args.far_page) == far, "audit cursor mismatch"
    out["audit"] = {
        "page_1_ms": await p50_ms(lambda: fetch_audit(None), args.runs),
        "far_page_ms": await p50_ms(lambda: fetch_audit(far), args.runs),
    }
    return out


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the engine sends inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def query_only_ms(dsn: str, actor: Actor, root: int, runs: int) -> float:
    """The service's subtree query alone (server time plus transfer, no models built), to show
    where the service's time goes. Reads the query text from task_queries on purpose."""
    sql = str(task_queries._SUBTREE).replace(":task_id", "$1").replace(":worker_id", "$2")
    conn = await asyncpg.connect(dsn)
    try:
        return await p50_ms(lambda: conn.fetch(sql, root, actor.worker_id), runs)
    finally:
        await conn.close()


async def measure_subtree(db: Database, dsn: str, actor: Actor, args: Any) -> dict:
    root = 1
    await task_queries.get_task(db, actor, root)  # warm
    with statements(db) as sent:
        detail = await task_queries.get_task(db, actor, root)
    assert len(detail.subtree) == args.subtree - 1, len(detail.subtree)
    times = []
    for _ in range(args.subtree_runs):
        start = time.perf_counter()
        await task_queries.get_task(db, actor, root)
        times.append(time.perf_counter() - start)
    return {
        "nodes": args.subtree,
        "fanout": FANOUT,
        "depth": max(n.depth for n in detail.subtree),
        "p50_ms": 1000 * statistics.median(times),
        "query_only_p50_ms": await query_only_ms(dsn, actor, root, args.subtree_runs),
        "statements": len(sent),
    }


async def measure_verify(db: Database, runs: int) -> dict:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await audit.verify(db)
        times.append(time.perf_counter() - start)
        assert result.ok, result.problems
    assert result is not None
    seconds = statistics.median(times)
    return {
        "entries": result.entries_checked,
        "chains": result.chains_checked,
        "seconds": seconds,
        "entries_per_second": result.entries_checked / seconds,
    }


# ------------------------------------------------------------------ run


async def setup(db: Database) -> tuple[Actor, int, int]:
    """@bench in project `bench`; project `other` (of @else) holds tasks @bench must not see."""
    me = await workers.create_human(db, CreateHuman(handle="@bench", name="Bench"))
    actor = Actor(worker_id=me.id, handle=me.handle, type=WorkerType.HUMAN)
    them = await workers.create_human(db, CreateHuman(handle="@else", name="Someone else"))
    other_actor = Actor(worker_id=them.id, handle=them.handle, type=WorkerType.HUMAN)
    bench = await projects.create_project(db, actor, CreateProject(slug="bench", name="Bench"))
    other = await projects.create_project(
        db, other_actor, CreateProject(slug="other", name="Other")
    )
    return actor, bench.id, other.id


async def run(url: str, args: Any, *, embedded: bool) -> dict[str, Any]:
    dsn = plain_dsn(url)
    if embedded:
        await fast_load_settings(dsn)
    db = await open_database(Settings(_env_file=None, database_url=url), pool_size=5)  # type: ignore[call-arg]
    try:
        actor, bench_id, other_id = await setup(db)
        print(f"loading {args.tasks:,} tasks and {args.audit:,} audit entries ...", flush=True)
        loaded = await load(dsn, actor=actor, bench_id=bench_id, other_id=other_id, args=args)
        print("measuring list pages ...", flush=True)
        lists = await measure_lists(db, dsn, actor, bench_id, args)
        print(f"measuring a {args.subtree:,}-node subtree ...", flush=True)
        subtree = await measure_subtree(db, dsn, actor, args)
        print("verifying the whole audit log ...", flush=True)
        verify = await measure_verify(db, args.verify_runs)
        conn = await asyncpg.connect(dsn)
        try:
            sizes = {
                "tasks": await conn.fetchval("SELECT count(*) FROM tasks"),
                "audit_entries": await conn.fetchval("SELECT count(*) FROM audit_log"),
                "database_size": await conn.fetchval(
                    "SELECT pg_size_pretty(pg_database_size(current_database()))"
                ),
                "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
                "work_mem": await conn.fetchval("SHOW work_mem"),
            }
        finally:
            await conn.close()
    finally:
        await db.close()
    return {"data": sizes, "load": loaded, "lists": lists, "subtree": subtree, "verify": verify}


def table(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    lists, far = r["lists"], r["lists"]["far_page"]
    rows = []
    for key, label in (
        ("tasks_created", "list_tasks, sort created"),
        ("tasks_priority", "list_tasks, sort priority"),
        ("audit", "list_audit (newest first)"),
    ):
        m = lists[key]
        rows.append(
            (
                label,
                f"{m['page_1_ms']:.1f} ms | {m['far_page_ms']:.1f} ms",
                f"page 1 | page {far:,} (p50), ratio {m['far_page_ms'] / m['page_1_ms']:.2f}",
            )
        )
    s, v = r["subtree"], r["verify"]
    rows.append(
        (
            f"get_task, {s['nodes']:,}-node subtree",
            f"{s['p50_ms']:.0f} ms",
            f"{s['statements']} SQL statement(s), depth {s['depth']}; "
            f"the query alone {s['query_only_p50_ms']:.0f} ms",
        )
    )
    rows.append(
        (
            "audit verify, whole log",
            f"{v['entries_per_second']:,.0f} entries/s",
            f"{v['entries']:,} entries in {v['seconds']:.1f} s, {v['chains']:,} chains",
        )
    )
    return rows


def print_table(r: dict[str, Any]) -> None:
    rows = table(r)
    width = max(len(a) for a, _, _ in rows)
    d, m = r["data"], r["machine"]
    print(
        f"\nTaskFlow scale bench: {d['tasks']:,} tasks, {d['audit_entries']:,} audit entries "
        f"({d['database_size']}), {r['postgres']}, {m['cpus']} cores"
    )
    for a, b, note in rows:
        print(f"  {a:<{width}}  {b:>22}  {note}")
    load = r["load"]
    print(
        f"  (load: tasks {load['tasks_s']:.0f} s, audit {load['audit_s']:.0f} s, "
        f"vacuum/analyze {load['vacuum_analyze_s']:.0f} s)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--audit", type=int, default=5_000_000, help="audit entries")
    p.add_argument("--subtree", type=int, default=100_000, help="nodes in the big subtree")
    p.add_argument("--far-page", type=int, default=1000, help="the page compared with page 1")
    p.add_argument("--runs", type=int, default=21, help="timed runs per list page")
    p.add_argument("--subtree-runs", type=int, default=5)
    p.add_argument("--verify-runs", type=int, default=1)
    p.add_argument("--walk", action="store_true", help="also walk the cursors page by page")
    p.add_argument("--database-url", default=None, help="a server to create the database on")
    p.add_argument("--quick", action="store_true", help="20k tasks, 100k entries: seconds")
    p.add_argument("--json", type=Path, default=None, help="default bench/results/scale.json")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.audit, args.subtree = 20_000, 100_000, 5_000
        args.runs, args.subtree_runs, args.verify_runs, args.walk = 5, 3, 3, True
    bench_tasks = args.subtree + (args.tasks - args.subtree) * 9 // 10
    args.far_page = max(2, min(args.far_page, bench_tasks // PAGE - 1))
    if not 1 <= args.subtree <= args.tasks:
        p.error("--subtree must be between 1 and --tasks")
    if args.json is None and not args.quick:
        args.json = RESULTS_DIR / "scale.json"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with postgres(args.database_url) as (server_url, embedded):
        database = "embedded (pgserver)" if embedded else "--database-url"
        with fresh_database(server_url, "tf_scale") as url:
            results = asyncio.run(run(url, args, embedded=embedded is not None))
            results["postgres"] = asyncio.run(server_version(url))
    results = {
        "bench": "scale",
        "at": started,
        "command": " ".join(
            ["uv run python bench/scale.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(database),
        **results,
    }
    print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

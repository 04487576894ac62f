"""Bulk data for the subtree and verify benches, straight into the schema.

INSERT ... SELECT generate_series (never through the services, which would take hours for a
million rows): a ten-way task tree in project `bench`, a deep chain, a wide tree of tasks with
long descriptions, and hash-chained audit entries whose hashes PostgreSQL computes over the very
payload `audit.verify` rebuilds, so the log verifies.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import asyncpg

from taskflow.core import audit

FANOUT = 10
CHUNK = 100_000  # rows per INSERT ... SELECT, so progress shows

# Task g's parent is (g - 2) / 10 + 1: task 1 is the root, every other task has ten children
# until the ids run out, ids follow a breadth-first walk.
_TASKS = """
    INSERT INTO tasks (id, project_id, parent_id, title, status, priority, progress_percent,
                       tags, created_by_id, created_at, updated_at)
    SELECT g, $1::bigint,
           CASE WHEN g = 1 THEN NULL ELSE (g - 2) / $2::bigint + 1 END,
           'task ' || g,
           (ARRAY['pending', 'in_progress', 'review', 'completed', 'blocked'])[g % 5 + 1],
           (ARRAY['low', 'medium', 'high', 'critical'])[(g * 7) % 4 + 1],
           CASE WHEN g % 5 = 3 THEN 100 ELSE g % 100 END,
           CASE WHEN g % 3 = 0 THEN ARRAY['backend'] ELSE ARRAY['frontend', 'ux'] END,
           $3::bigint, now(), now()
    FROM generate_series($4::bigint, $5::bigint) AS g
"""

# The payload `audit.payload()` hashes, spelt in SQL (`audit.verify` rebuilds it from the chain's
# entity, `audit._VERIFY_SQL`'s head and tail, and the canonical details).
_PAYLOAD = """
    concat_ws(chr(31), 'task', e.id::text, e.project_id::text, e.id::text, e.action,
              e.actor_id::text, e.actor_handle, 'human', '')
    || e.details
    || concat_ws(chr(31), '', e.request_id, 'mcp',
                 to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00')
"""

# Level k holds the k-th entry of the chains of tasks lo..hi; its previous hash is the
# (k-1)-th entry's (or the genesis).
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
               date_trunc('second', now()) + ($1::int * 100000 + t.id) * interval '1 millisecond'
                   AS created_at,
               coalesce(p.hash, $3::bytea) AS prev_hash
        FROM tasks t
        LEFT JOIN audit_log p
               ON $1::int > 1 AND p.entity_type = 'task' AND p.entity_id = t.id
              AND p.seq = $1::int - 1
        WHERE t.id BETWEEN $4::bigint AND $5::bigint
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


def _ranges(first: int, last: int) -> Iterator[tuple[int, int]]:
    for lo in range(first, last + 1, CHUNK):
        yield lo, min(last, lo + CHUNK - 1)


def _progress(text: str) -> None:
    print(f"\r  {text}", end="", file=sys.stderr, flush=True)


async def load_tree(dsn: str, *, project_id: int, actor_id: int, tasks: int) -> None:
    """Tasks 1..`tasks`, one ten-way tree rooted at task 1 (the bench's seed must own none)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        for lo, hi in _ranges(1, tasks):
            await conn.execute(_TASKS, project_id, FANOUT, actor_id, lo, hi)
            _progress(f"tasks {hi:,}/{tasks:,}")
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('tasks', 'id'), $1::bigint)", tasks
        )
        await conn.execute("VACUUM ANALYZE tasks")
    finally:
        await conn.close()
    print(file=sys.stderr)


# Task g (first..last) hangs under g - 1; the first under nothing: one chain `last - first` deep.
# No task of it is completed, so a rolled-up read must visit every level.
_CHAIN = """
    INSERT INTO tasks (id, project_id, parent_id, title, status, priority, progress_percent,
                       created_by_id, created_at, updated_at)
    SELECT g, $1::bigint, CASE WHEN g = $3::bigint THEN NULL ELSE g - 1 END, 'link ' || g,
           (ARRAY['pending', 'in_progress'])[g % 2 + 1], 'medium', g % 100, $2::bigint,
           now(), now()
    FROM generate_series($3::bigint, $4::bigint) AS g
"""

# A root (first) and `last - first` children, each with a description of `$5` characters.
_WIDE = """
    INSERT INTO tasks (id, project_id, parent_id, title, description, status, priority,
                       progress_percent, created_by_id, created_at, updated_at)
    SELECT g, $1::bigint, CASE WHEN g = $3::bigint THEN NULL ELSE $3::bigint END, 'wide ' || g,
           CASE WHEN g = $3::bigint THEN '' ELSE repeat(md5(g::text), $5::int / 32 + 1) END,
           'in_progress', 'medium', g % 100, $2::bigint, now(), now()
    FROM generate_series($3::bigint, $4::bigint) AS g
"""


async def load_chain(dsn: str, *, project_id: int, actor_id: int, first: int, depth: int) -> int:
    """Tasks first..first+depth as one chain (the root, then `depth` levels); returns the root."""
    await _insert(dsn, _CHAIN, project_id, actor_id, first, first + depth)
    return first


async def load_wide(
    dsn: str, *, project_id: int, actor_id: int, first: int, children: int, description: int
) -> int:
    """A root at `first` with `children` children of `description`-character descriptions."""
    await _insert(dsn, _WIDE, project_id, actor_id, first, first + children, description)
    return first


async def _insert(dsn: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(sql, *args)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks))"
        )
        await conn.execute("VACUUM ANALYZE tasks")
    finally:
        await conn.close()


async def load_audit(dsn: str, *, actor_id: int, tasks: int, entries: int) -> None:
    """`entries` audit entries over the chains of tasks 1..`tasks`, level by level."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        done, level = 0, 0
        while done < entries:
            level += 1
            count = min(tasks, entries - done)
            for lo, hi in _ranges(1, count):
                await conn.execute(_AUDIT_LEVEL, level, actor_id, audit.GENESIS, lo, hi)
                _progress(f"audit {done + hi:,}/{entries:,}")
            done += count
        await conn.execute(_AUDIT_HEADS)
        await conn.execute("VACUUM ANALYZE audit_log")
        await conn.execute("VACUUM ANALYZE audit_heads")
    finally:
        await conn.close()
    print(file=sys.stderr)

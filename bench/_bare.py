"""The bare endpoint TaskFlow's REST create is compared to: the ceiling on this machine.

`uvicorn --factory bench._bare:factory`: Starlette on an asyncpg pool, `POST /tasks` doing the
same two INSERTs TaskFlow's create does (the task row, and the same hash-chained audit append
`audit.record` runs) in one transaction, with no auth, no validation and no ORM.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DSN_ENV = "BENCH_BARE_DSN"
POOL = 20  # the TaskFlow engine's pool_size 10 + max_overflow 10

_TASK_INSERT = """
INSERT INTO tasks (project_id, title, description, priority, tags, created_by_id)
VALUES ($1, $2, '', 'medium', '{}', $3) RETURNING id
"""
# The append the core's audit.record runs: bump the entity's chain head, insert the entry.
_AUDIT_APPEND = """
WITH head AS (
    INSERT INTO audit_heads AS h (entity_type, entity_id, seq, head_hash, prev_hash)
    VALUES ('task', $1, 1, sha256($5::bytea || $6::bytea), $5::bytea)
    ON CONFLICT (entity_type, entity_id) DO UPDATE
       SET seq = h.seq + 1, prev_hash = h.head_hash, head_hash = sha256(h.head_hash || $6::bytea)
    RETURNING seq, prev_hash, head_hash
)
INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, actor_id,
                       actor_handle, actor_type, details, request_id, via, created_at,
                       prev_hash, hash)
SELECT 'task', $1, head.seq, $2, $1, 'created', $3, $4, 'agent', $7::jsonb, NULL, 'http', now(),
       head.prev_hash, head.head_hash
FROM head
"""


def factory() -> Starlette:
    """The app; BENCH_BARE_DSN, BENCH_PROJECT_ID and BENCH_ACTOR_ID say where and as whom."""
    dsn = os.environ[DSN_ENV]
    project_id, actor_id = int(os.environ["BENCH_PROJECT_ID"]), int(os.environ["BENCH_ACTOR_ID"])
    state: dict[str, asyncpg.Pool] = {}

    async def create(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        details = json.dumps({"new": body})
        async with state["pool"].acquire() as conn, conn.transaction():
            task_id = await conn.fetchval(_TASK_INSERT, project_id, body["title"], actor_id)
            await conn.execute(
                _AUDIT_APPEND,
                task_id,
                project_id,
                actor_id,
                "@bench-bot",
                bytes(32),
                details.encode(),
                details,
            )
        return JSONResponse({"id": task_id}, status_code=201)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
        yield
        await state["pool"].close()

    routes = [Route("/tasks", create, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes, lifespan=lifespan)

"""Rate limits per worker: a token bucket in each process, shared through PostgreSQL.

Each worker has two buckets, writes and reads (`RATE_LIMIT_WRITES_PER_MINUTE`,
`RATE_LIMIT_READS_PER_MINUTE`), holding at most `RATE_LIMIT_BURST_SECONDS` worth of calls and
refilled at the per-minute rate. A call takes one token from its bucket in memory (no round
trip: the hot path stays a dict lookup); an empty bucket refuses it with `RateLimited`, saying
in how many seconds a token will be there, after holding the call a quarter of a second (so a
runaway loop slows down instead of keeping a core busy with refusals).

Every `RATE_LIMIT_SYNC_SECONDS` a background task flushes what this process spent to the
`rate_buckets` table in one statement (`_SYNC`): the row is the shared bucket (refilled by the
database's clock, less every replica's spending) and the process takes the row's level as its
own. So every replica sees every replica's spending within a second, and a restarted process
finds its workers' buckets as they were (within a second). Between two syncs each replica may
spend what its own copy holds: the overshoot is at most one burst per replica per sync
interval, never a multiple of the rate (decision 67).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text

from taskflow.core.errors import RateLimited

if TYPE_CHECKING:
    from taskflow.core.config import Settings
    from taskflow.core.db import Database

log = logging.getLogger("taskflow.limits")

WRITE = "write"
READ = "read"
REFUSAL_PAUSE_SECONDS = 0.25
"""How long a refused call is held before its refusal goes out (`admit`): a runaway loop that
waits for each answer then makes 4 calls a second instead of thousands, and holding a call
costs no CPU. The caller is told to wait at least a second (`Retry-After`) anyway."""
MAX_KNOWN_KEYS = 10_000
"""API keys remembered with their worker (so a known key is refused before its lookup)."""

_SYNC = text(
    """
    INSERT INTO rate_buckets AS b (worker_id, kind, tokens, capacity, rate, spent, updated_at)
    SELECT u.w, u.k, u.l, u.c, u.r, u.s, now()
    FROM unnest(
        CAST(:workers AS bigint[]), CAST(:kinds AS text[]), CAST(:spent AS float8[]),
        CAST(:caps AS float8[]), CAST(:rates AS float8[]), CAST(:levels AS float8[])
    ) AS u(w, k, s, c, r, l)
    ORDER BY u.w, u.k
    ON CONFLICT (worker_id, kind) DO UPDATE SET
        tokens = greatest(
            -EXCLUDED.capacity,
            least(
                EXCLUDED.capacity,
                b.tokens + EXCLUDED.rate * extract(epoch FROM now() - b.updated_at)
            ) - EXCLUDED.spent
        ),
        capacity = EXCLUDED.capacity,
        rate = EXCLUDED.rate,
        spent = EXCLUDED.spent,
        updated_at = now()
    RETURNING worker_id, kind, tokens
    """
)


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float
    """When `tokens` was last brought up to date (a take, or a sync)."""
    used: float
    """When the last call was admitted or refused."""
    spent: float = 0.0
    """Taken since the last sync (what the next one flushes)."""


class RateLimiter:
    """The buckets of one process. `take` is synchronous and cheap; `sync` shares them."""

    def __init__(
        self,
        db: Database | None,
        *,
        writes_per_minute: float,
        reads_per_minute: float,
        burst_seconds: float = 10.0,
        sync_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.rate = {WRITE: writes_per_minute / 60.0, READ: reads_per_minute / 60.0}
        self.per_minute = {WRITE: writes_per_minute, READ: reads_per_minute}
        self.capacity = {k: max(1.0, r * burst_seconds) for k, r in self.rate.items()}
        self.sync_seconds = sync_seconds
        self.buckets: dict[tuple[int, str], Bucket] = {}
        self.keys: dict[str, tuple[int, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None) -> RateLimiter | None:
        """The limiter the settings ask for; None when both rates are 0 (unlimited)."""
        writes = settings.rate_limit_writes_per_minute
        reads = settings.rate_limit_reads_per_minute
        if writes <= 0 and reads <= 0:
            return None
        return cls(
            db,
            writes_per_minute=writes,
            reads_per_minute=reads,
            burst_seconds=settings.rate_limit_burst_seconds,
            sync_seconds=settings.rate_limit_sync_seconds,
        )

    def take(self, worker_id: int, write: bool, handle: str | None = None) -> None:
        """Take one token of the worker's write or read bucket, or refuse with `RateLimited`."""
        kind = WRITE if write else READ
        rate = self.rate[kind]
        if rate <= 0:
            return
        now = time.monotonic()
        bucket = self.buckets.get((worker_id, kind))
        if bucket is None:
            bucket = self.buckets[(worker_id, kind)] = Bucket(self.capacity[kind], now, now)
            self._ensure_sync()
        else:
            bucket.tokens = min(self.capacity[kind], bucket.tokens + (now - bucket.at) * rate)
            bucket.at = bucket.used = now
        if bucket.tokens < 1.0:
            retry = max(1, math.ceil((1.0 - bucket.tokens) / rate))
            who = handle or f"worker {worker_id}"
            limit = self.per_minute[kind]
            raise RateLimited(
                f"rate limit: {who} may make {limit:g} {kind}s per minute; retry in {retry} s",
                retry_after=retry,
                limit=int(limit) if limit.is_integer() else limit,
                kind=kind,
            )
        bucket.tokens -= 1.0
        bucket.spent += 1.0

    async def admit(self, worker_id: int, write: bool, handle: str | None = None) -> None:
        """`take`, but a refusal is held `REFUSAL_PAUSE_SECONDS` before it is raised."""
        try:
            self.take(worker_id, write, handle)
        except RateLimited:
            await asyncio.sleep(REFUSAL_PAUSE_SECONDS)
            raise

    def worker_of(self, key_hash: str) -> tuple[int, str] | None:
        """The worker (id, handle) an API key (its hash) was last seen to belong to, if any."""
        return self.keys.get(key_hash)

    def learn(self, key_hash: str, worker_id: int, handle: str) -> None:
        if len(self.keys) >= MAX_KNOWN_KEYS:
            self.keys.clear()
        self.keys[key_hash] = (worker_id, handle)

    # ------------------------------------------------------------------ sharing

    def _ensure_sync(self) -> None:
        """Start the sync task on this event loop (lazily: a limiter may serve several loops
        in tests, one at a time)."""
        if self.db is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._task = loop.create_task(self._run(), name="taskflow-rate-sync")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_seconds)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the limits stay local until the database is back
                log.warning("rate limit sync failed (limits stay per process for now): %s", exc)

    async def sync(self) -> None:
        """Flush what was spent here into the shared buckets and take their levels."""
        if self.db is None or not self.buckets:
            return
        now = time.monotonic()
        keys = sorted(self.buckets)
        flushed: dict[tuple[int, str], float] = {}
        levels = []
        for key in keys:
            bucket = self.buckets[key]
            flushed[key] = bucket.spent
            bucket.spent = 0.0
            rate, capacity = self.rate[key[1]], self.capacity[key[1]]
            levels.append(min(capacity, bucket.tokens + (now - bucket.at) * rate))
        params = {
            "workers": [w for w, _ in keys],
            "kinds": [k for _, k in keys],
            "spent": [flushed[k] for k in keys],
            "caps": [self.capacity[k] for _, k in keys],
            "rates": [self.rate[k] for _, k in keys],
            "levels": levels,  # a new row starts as this process's copy is now
        }
        try:
            async with self.db.engine.begin() as conn:
                rows = (await conn.execute(_SYNC, params)).all()
        except BaseException:
            for key, spent in flushed.items():  # flush it next time
                if key in self.buckets:
                    self.buckets[key].spent += spent
            raise
        for worker_id, kind, tokens in rows:
            bucket = self.buckets.get((worker_id, kind))
            if bucket is None:
                continue
            # What was taken while the statement ran is not in the row yet.
            bucket.tokens = min(self.capacity[kind], float(tokens)) - bucket.spent
            bucket.at = time.monotonic()
        # Forget buckets unused long enough to be full again (the row keeps their state), so
        # a sync carries only the workers active lately.
        for key in keys:
            bucket = self.buckets[key]
            full_after = self.capacity[key[1]] / self.rate[key[1]]
            if bucket.spent == 0 and now - bucket.used > full_after + self.sync_seconds:
                del self.buckets[key]

    async def close(self) -> None:
        """Stop sharing; what was spent since the last sync is flushed first."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if task.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await self.sync()

"""The server's housekeeping: what a long-running `taskflow serve` does now and then by itself.

Three jobs, in one background task per process (`Housekeeper`, started in the app's lifespan by
`taskflow.server` and stopped with it):
- release claims whose lease ran out (`handlers.leases`), every `TASKFLOW_LEASE_SWEEP_SECONDS`.
  Reads and claims release them lazily too; the sweep frees a task (and writes its
  `lease_expired` entry) even when nobody reads or claims;
- write due-date reminders (`reminders`), every `REMINDER_INTERVAL_SECONDS`;
- deliver the webhook outbox (`webhooks`), every `WEBHOOK_POLL_SECONDS`.
Every replica runs one: leases and deliveries are taken with `FOR UPDATE SKIP LOCKED` and
reminders written under an advisory lock, so replicas share the work without doing any of it
twice. A job that fails (the database restarting, a bug) is logged and tried again next time,
without holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from taskflow.core import reminders, webhooks
from taskflow.core.actor import Actor
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import Unavailable
from taskflow.core.handlers import leases
from taskflow.core.uow import UnitOfWork

log = logging.getLogger("taskflow.housekeeping")

SWEEPER = Actor(worker_id=0, handle="@taskflow", type=WorkerType.AGENT, via=Via.CORE)
"""Whose call a sweep is: only its `via` reaches an entry, whose actor is the lapsed holder."""


async def release_leases(db: Database) -> list[int]:
    """Release every task whose lease has run out (up to one batch), in one unit of work: the
    releases and their entries commit together. The ids released."""
    uow = UnitOfWork.lazy(db)
    async with db.guarded():
        try:
            released = await leases.release_expired(uow.session, SWEEPER, "housekeeping")
            await uow.commit()
        finally:
            await uow.close()
    if released:
        log.info("released %d task(s) whose lease ran out: %s", len(released), released)
    return released


class Housekeeper:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._due: dict[str, float] = {}  # job -> monotonic time it is next due

    async def round(self, client: httpx.AsyncClient) -> None:
        """One pass: each job whose interval has passed, then every webhook delivery due."""
        sweep = self.settings.taskflow_lease_sweep_seconds
        if sweep > 0:
            await self._every("leases", sweep, lambda: release_leases(self.db))
        interval = self.settings.reminder_interval_seconds
        await self._every("reminders", interval, lambda: reminders.remind(self.db))
        await self._guarded("webhooks", lambda: self._deliver(client))

    async def _deliver(self, client: httpx.AsyncClient) -> None:
        while await webhooks.deliver_due(self.db, self.settings, client) == webhooks.BATCH:
            pass

    async def _every(self, job: str, seconds: float, run: Callable[[], Awaitable[object]]) -> None:
        now = time.monotonic()
        if now >= self._due.get(job, 0.0):
            self._due[job] = now + seconds
            await self._guarded(job, run)

    @staticmethod
    async def _guarded(job: str, run: Callable[[], Awaitable[object]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Unavailable as exc:  # the database restarting: no bug, no traceback
            log.warning("housekeeping: %s skipped: %s", job, exc)
        except Exception:
            log.exception("housekeeping: %s failed; trying again next round", job)

    async def run(self) -> None:
        async with webhooks.client_for(self.settings) as client:
            while True:
                await self.round(client)
                await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        """Until the next job is due, at most the webhook poll interval."""
        poll = self.settings.webhook_poll_seconds
        if not self._due:
            return poll
        return max(0.01, min(poll, min(self._due.values()) - time.monotonic()))


@contextlib.asynccontextmanager
async def running(db: Database, settings: Settings) -> AsyncIterator[Housekeeper | None]:
    """The housekeeper running in the background for as long as the block lasts."""
    if not settings.taskflow_housekeeping:
        yield None
        return
    keeper = Housekeeper(db, settings)
    task = asyncio.create_task(keeper.run(), name="taskflow-housekeeping")
    try:
        yield keeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

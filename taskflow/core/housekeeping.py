"""What a long-running server does now and then by itself: release claims whose lease ran out.

Expired leases are also released lazily by the next claim or read (`handlers.leases`); the
sweep makes sure a task is freed (and its `lease_expired` entry written) within
`TASKFLOW_LEASE_SWEEP_SECONDS` even when nobody reads or claims. Each sweep is one unit of work:
the release and its entries commit together, and SKIP LOCKED lets replicas sweep at once.
"""

from __future__ import annotations

import asyncio
import logging

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.handlers import leases
from taskflow.core.uow import UnitOfWork

log = logging.getLogger(__name__)

SWEEPER = Actor(worker_id=0, handle="@taskflow", type=WorkerType.AGENT, via=Via.CORE)
"""Whose call a sweep is: only its `via` reaches an entry, whose actor is the lapsed holder."""


async def release_leases(db: Database) -> list[int]:
    """Release every task whose lease has run out (up to one batch); the ids released."""
    uow = UnitOfWork.lazy(db)
    async with db.guarded():
        try:
            released = await leases.release_expired(uow.session, SWEEPER, "housekeeping")
            await uow.commit()
        finally:
            await uow.close()
    return released


async def sweep_forever(db: Database, every_seconds: float) -> None:
    """Sweep every `every_seconds` until cancelled; a failed sweep is logged and retried."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            released = await release_leases(db)
        except Exception as exc:  # the database may be restarting: try again next time
            log.warning("lease sweep failed: %s", exc)
            continue
        if released:
            log.info("released %d task(s) whose lease ran out: %s", len(released), released)

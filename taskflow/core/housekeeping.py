"""The server's housekeeping: webhook deliveries and due-date reminders, in the background.

`taskflow serve` runs one `Housekeeper` per process, started in the app's lifespan
(`taskflow.server`) and stopped with it. Every replica runs one: deliveries are claimed with
`FOR UPDATE SKIP LOCKED` and reminders are written under an advisory lock, so replicas share the
work without doing any of it twice. A round that fails (the database restarting, a bug) is
logged and the next round tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx

from taskflow.core import reminders, webhooks
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.errors import Unavailable

log = logging.getLogger("taskflow.housekeeping")


class Housekeeper:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._next_reminders = 0.0

    async def round(self, client: httpx.AsyncClient) -> None:
        """One pass: reminders when their interval has passed, then every delivery due."""
        now = time.monotonic()
        if now >= self._next_reminders:
            self._next_reminders = now + self.settings.reminder_interval_seconds
            await reminders.remind(self.db)
        while await webhooks.deliver_due(self.db, self.settings, client) == webhooks.BATCH:
            pass

    async def run(self) -> None:
        async with webhooks.client_for(self.settings) as client:
            while True:
                try:
                    await self.round(client)
                except asyncio.CancelledError:
                    raise
                except Unavailable as exc:  # the database restarting: no bug, no traceback
                    log.warning("housekeeping round skipped: %s", exc)
                except Exception:
                    log.exception("housekeeping round failed; trying again")
                await asyncio.sleep(self.settings.webhook_poll_seconds)


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

"""A small Server-Sent Events reader over httpx for tests and benches (plain helpers, no pytest).

`SseReader` opens `GET path` as a stream in a task of its own and parses events (`id:`,
`data:`, comments) into a queue, so a test can make changes meanwhile and await what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: str | None
    data: Any
    received: float = 0.0


@dataclass
class SseReader:
    client: httpx.AsyncClient
    path: str = "/api/events"
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    events: asyncio.Queue[SseEvent] = field(default_factory=asyncio.Queue)
    comments: int = 0
    status: int | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SseReader:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.opened.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task
            self._task = None

    async def _read(self) -> None:
        try:
            await self._stream()
        except httpx.HTTPError as exc:  # the server went away: the test sees no more events
            self.error = exc
        finally:
            self.opened.set()

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.client.stream(
            "GET", self.path, params=self.params, headers=self.headers, timeout=None
        ) as response:
            self.status = response.status_code
            self.opened.set()
            if response.status_code != 200:
                await response.aread()
                return
            event_id: str | None = None
            data: list[str] = []
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        text = "\n".join(data)
                        with contextlib.suppress(ValueError):
                            text = json.loads(text)
                        self.events.put_nowait(SseEvent(event_id, text, loop.time()))
                    event_id, data = None, []
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    async def next(self, within: float = 5.0) -> SseEvent:
        return await asyncio.wait_for(self.events.get(), within)

    async def take(self, n: int, within: float = 10.0) -> list[SseEvent]:
        return [await self.next(within) for _ in range(n)]

    async def quiet(self, seconds: float = 0.5) -> list[SseEvent]:
        """Whatever arrives within `seconds` (to prove nothing does)."""
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await self.next(seconds))
        return got

"""Resource subscriptions: `resources/subscribe` and `notifications/resources/updated`.

Offered where the server holds a session with a stream to the client: stdio (see docs/mcp.md
for why Streamable HTTP does not). A subscription is checked by reading the resource (a task or
project the caller cannot read is refused with the read's own "resource not found") and kept
per session. The session's one `Watcher` follows the feed (`taskflow.core.feed.follow`) with the
caller's visibility, so it is never told about anything the caller cannot see, and marks the
URIs an event touches:

- `taskflow://tasks/{id}` (with any query): an event about the task or any task of its subtree
  (the resource shows a page of the subtree and the rolled-up progress, so those change it);
- `taskflow://projects/{slug}` and `taskflow://projects/{slug}/audit`: any event of the project.

Marked URIs are sent by one sender per session: the first at once, then at most one
notification per URI per `COALESCE_SECONDS` (a burst becomes one). Unsubscribing drops the URI;
the last unsubscribe, or the session's end, stops the session's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ResourceUpdated,
    event_to_notification,
)
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)

from taskflow.core import feed
from taskflow.core.actor import Actor
from taskflow.core.errors import Unavailable
from taskflow.core.runtime import Runtime

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.1
MAX_STREAMS = 1024
"""Listen streams one process holds at once (each is a feed follower); more are refused."""
TASK_URI = re.compile(r"^taskflow://tasks/(\d{1,18})(?:\?.*)?$")
PROJECT_URI = re.compile(r"^taskflow://projects/([^/?#]+)(?:/audit)?$")

_PROJECT_OF = "SELECT project_id FROM tasks WHERE id = $1"
_ANCESTORS = (
    "WITH RECURSIVE up AS (SELECT id, parent_id FROM tasks WHERE id = $1 "
    "UNION ALL SELECT t.id, t.parent_id FROM tasks t JOIN up ON t.id = up.parent_id) "
    "SELECT id FROM up"
)


@dataclass(frozen=True)
class Target:
    """What a subscribed URI watches: one task (with its subtree) or one project."""

    task_id: int | None = None
    project: str | None = None


def target_of(uri: str) -> Target | None:
    """The task or project `uri` names, or None for a URI no subscription can watch."""
    if match := TASK_URI.match(uri):
        return Target(task_id=int(match[1]))
    if match := PROJECT_URI.match(uri):
        return Target(project=match[1])
    return None


@dataclass
class Watcher:
    """One session's subscriptions, its feed follower and its sender."""

    runtime: Runtime
    actor: Actor
    send: Callable[[str], Awaitable[None]]
    still_valid: Callable[[], Awaitable[bool]] | None = None
    """Re-checks the caller's credentials every FEED_RECHECK_SECONDS: False stops the watcher."""
    tasks: dict[int, set[str]] = field(default_factory=dict)
    projects: dict[int, set[str]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    known: dict[int, frozenset[int]] = field(default_factory=dict)
    """Each task's last known ancestors (itself included): its deletion still reaches them."""
    task_projects: set[int] = field(default_factory=set)
    """The projects of the watched tasks. A subtree stays in its root's project, so an entry of
    any other project touches none of them and needs no ancestor query (one per event per
    watcher otherwise, on every change in every project the caller sees)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def uris(self) -> set[str]:
        return {u for group in (*self.tasks.values(), *self.projects.values()) for u in group}

    async def add(self, uri: str, target: Target) -> None:
        """Watch `uri` (already checked readable); starts following on the first one."""
        async with feed.connection(self.runtime.db) as raw:
            if target.project is not None:
                scope = await feed.resolve_scope(raw, self.actor, project=target.project)
                assert scope.project_id is not None
                self.projects.setdefault(scope.project_id, set()).add(uri)
            else:
                assert target.task_id is not None
                self.tasks.setdefault(target.task_id, set()).add(uri)
                project_id = await raw.fetchval(_PROJECT_OF, target.task_id)
                if project_id is not None:
                    self.task_projects.add(project_id)
            if not any(not task.done() for task in self._running):
                scope = await feed.resolve_scope(raw, self.actor)
                start = await feed.latest(raw)  # what commits after this answer is followed
                self._running = [
                    asyncio.create_task(self._follow(scope, start), name="mcp-subscription"),
                    asyncio.create_task(self._sender(), name="mcp-subscription-sender"),
                ]
                if self.still_valid is not None:
                    self._running.append(
                        asyncio.create_task(self._recheck(), name="mcp-subscription-recheck")
                    )

    async def run(self) -> None:
        """Wait while the watcher's tasks run (a listen stream's life); `close` ends it."""
        if self._running:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)

    async def remove(self, uri: str) -> None:
        for groups in (self.tasks, self.projects):
            for key in [k for k, uris in groups.items() if uri in uris]:
                groups[key].discard(uri)
                if not groups[key]:
                    del groups[key]
        self.dirty.discard(uri)
        if not self.uris:
            await self.close()

    async def close(self) -> None:
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _recheck(self) -> None:
        """A revoked key or a deactivated agent stops hearing anything (within the period)."""
        assert self.still_valid is not None
        while True:
            await asyncio.sleep(self.runtime.settings.feed_recheck_seconds)
            if not await self.still_valid():
                log.info(
                    "MCP subscription of %s ended: its credentials no longer open the API",
                    self.actor.handle,
                )
                self.tasks.clear()
                self.projects.clear()
                self.dirty.clear()
                for task in self._running:
                    if task is not asyncio.current_task():
                        task.cancel()
                return

    async def _follow(self, scope: feed.Scope, start: feed.Position) -> None:
        hub = self.runtime.hub()
        try:
            async for event in feed.follow(hub, self.runtime.db, scope, start):
                touched = await self._touched(event)
                if touched:
                    self.dirty |= touched
                    self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("MCP subscription: following the feed failed; notifications stop")

    async def _touched(self, event: feed.Event) -> set[str]:
        uris: set[str] = set()
        if event.project_id is not None:
            uris |= self.projects.get(event.project_id, set())
        if event.task_id is not None and self.tasks and event.project_id in self.task_projects:
            for task_id in await self._ancestors(event.task_id, event):
                uris |= self.tasks.get(task_id, set())
        return uris

    async def _ancestors(self, task_id: int, event: feed.Event | None = None) -> frozenset[int]:
        """The task and its ancestors. A deleted task has no row left: its entry names its
        parent (`details.old.parent_id`) and the root of the deletion, whose ancestors count."""
        try:
            async with feed.connection(self.runtime.db) as raw:
                rows = await raw.fetch(_ANCESTORS, task_id)
        except Unavailable:
            rows = []
        if rows:
            self.known[task_id] = frozenset(r["id"] for r in rows)
        elif event is not None and event.action == "deleted" and task_id not in self.known:
            old = event.details.get("old") or {}
            found = {task_id}
            for other in (old.get("parent_id"), event.details.get("with_parent")):
                if isinstance(other, int):
                    found |= await self._ancestors(other)
            self.known[task_id] = frozenset(found)
        return self.known.get(task_id, frozenset({task_id}))

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            due, self.dirty = self.dirty & self.uris, set()
            for uri in sorted(due):
                await self.send(uri)
            await asyncio.sleep(COALESCE_SECONDS)


class Subscriptions:
    """Every session's `Watcher`, keyed by the session's connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.watchers: dict[int, Watcher] = {}

    def watcher(
        self,
        key: int,
        actor: Actor,
        send: Callable[[str], Awaitable[None]],
        still_valid: Callable[[], Awaitable[bool]] | None,
    ) -> Watcher:
        if key not in self.watchers:
            self.watchers[key] = Watcher(self.runtime, actor, send, still_valid)
        return self.watchers[key]

    async def remove(self, key: int, uri: str) -> None:
        watcher = self.watchers.get(key)
        if watcher is None:
            return
        await watcher.remove(uri)
        if not watcher.uris:
            del self.watchers[key]

    async def close(self) -> None:
        """The session ended (stdio: the process's one session): stop every watcher."""
        watchers, self.watchers = list(self.watchers.values()), {}
        for watcher in watchers:
            await watcher.close()


def session_key(session: Any) -> int:
    """A key for the client connection a request came on (the SDK makes a `ServerSession` per
    request around the connection-scoped one)."""
    return id(getattr(session, "_connection", session))


class Listen:
    """`subscriptions/listen` (protocol 2026-07-28): the request's response is the stream, so it
    works on stateless Streamable HTTP (any replica; the feed crosses replicas) and on stdio.

    Only resource subscriptions are honored (TaskFlow's tool list does not change while a server
    runs); every URI asked for is checked as `resources/subscribe` checks it, before the ack.
    The stream ends when the client goes away (the SDK cancels the handler).
    """

    def __init__(self, server: Any, runtime: Runtime, *, limit: int = MAX_STREAMS) -> None:
        self.server = server
        self.runtime = runtime
        self.limit = limit
        self.open = 0

    async def __call__(
        self, ctx: Any, params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        if self.open >= self.limit:
            raise MCPError(
                INTERNAL_ERROR,
                f"this server holds {self.limit} listen streams already: retry later, or "
                "call list_changes",
            )
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        actor = await self.server.check_subscription(ctx, uris)
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}

        async def send(uri: str) -> None:
            note = event_to_notification(ResourceUpdated(uri=uri), meta)
            await ctx.session.send_notification(note, related_request_id=subscription_id)

        watcher = Watcher(self.runtime, actor, send, self.server.recheck_of(ctx))
        self.open += 1
        try:
            for uri in uris:
                target = target_of(uri)
                assert target is not None
                await watcher.add(uri, target)
            honored = SubscriptionFilter(resource_subscriptions=uris or None)
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=honored, _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            if uris:
                await watcher.run()
            else:
                await anyio.sleep_forever()
        finally:
            self.open -= 1
            await watcher.close()
        return SubscriptionsListenResult(_meta=meta)

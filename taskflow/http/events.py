"""`GET /api/events`: the audit log as Server-Sent Events (sse-starlette), live and resumable.

A plain route, not an operation: it streams for as long as the client stays, which no unit of
work should. What it reads is the core's feed (`taskflow.core.feed`), with `list_changes`'s
filters and visibility; each event is one audit entry, `id:` its entry id, `data:` the entry as
`AuditEntryOut` JSON. `Last-Event-ID` (sent by a reconnecting EventSource) or `?after=ID`
resumes right after that entry; neither starts from now. A comment line every 15 seconds keeps
proxies from closing an idle stream. A client that goes away ends its stream quietly; the
server re-checks the caller's credentials every `FEED_RECHECK_SECONDS` and ends the stream of
a revoked key, an expired token or a deactivated agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from pydantic import Field, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.routing import Route

from taskflow.core import feed
from taskflow.core.declarations import problems_of
from taskflow.core.errors import InvalidInput, TaskFlowError, Unavailable
from taskflow.core.handlers.feed import FeedFilter, scope_for
from taskflow.core.handlers.tasks import BIGINT_MAX
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import AuditEntryOut
from taskflow.http.identity import identify
from taskflow.http.openapi import RouteDoc

PATH = "/api/events"
RETRY_MS = 2_000


class EventsQuery(FeedFilter):
    after: Annotated[
        int | None,
        Field(
            default=None,
            ge=0,
            le=BIGINT_MAX,
            description="Resume after this entry id (Last-Event-ID wins)",
        ),
    ]


DOCS = (
    RouteDoc(
        "GET",
        PATH,
        "feed",
        "events",
        "Live audit entries as Server-Sent Events (text/event-stream), resumable by entry id.",
        description="Each event is one audit entry you may see (`id:` = its id, `data:` = the "
        "entry). Reconnect with `Last-Event-ID` (or `?after=ID`) to get every entry after it "
        "exactly once; without either the stream starts now. Filters as `GET /api/changes`; "
        "a comment line every 15 s.",
        query=EventsQuery,
        response=AuditEntryOut,
        media_type="text/event-stream",
    ),
)


def _query(request: Request) -> EventsQuery:
    arguments: dict[str, Any] = dict(request.query_params)
    last = request.headers.get("last-event-id")
    if last is not None and last.strip():
        arguments["after"] = last.strip()
    try:
        return EventsQuery.model_validate(arguments)
    except ValidationError as exc:
        raise InvalidInput(problems_of(EventsQuery, exc)) from None


async def _still_valid(request: Request, runtime: Runtime, local_handle: str | None) -> bool:
    """Whether the stream's credentials still open the API (a key revoked, a token expired or
    an agent deactivated since the stream began: no)."""
    try:
        await identify(request, runtime, local_handle)
    except Unavailable:
        return True  # not the caller's doing: the stream waits the outage out
    except TaskFlowError:
        return False
    return True


def routes(runtime: Runtime, local_handle: str | None) -> list[Route]:
    db = runtime.db

    async def events(request: Request) -> EventSourceResponse:
        """The feed as SSE (see the module docstring)."""
        actor = await identify(request, runtime, local_handle)
        query = _query(request)
        async with feed.connection(db) as raw:
            scope = await scope_for(raw, actor, query)
            after = None if query.after is None else await feed.position_of(raw, query.after)
        hub = runtime.hub()
        await hub.start()

        recheck = runtime.settings.feed_recheck_seconds

        async def stream() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(comment="taskflow feed", retry=RETRY_MS)
            events = feed.follow(hub, db, scope, after)
            pending = asyncio.ensure_future(anext(events))
            try:
                while True:
                    done, _ = await asyncio.wait({pending}, timeout=recheck)
                    if not done:
                        if not await _still_valid(request, runtime, local_handle):
                            return  # the client reconnects and hears why (401)
                        continue
                    event = pending.result()
                    yield ServerSentEvent(
                        data=orjson.dumps(event.as_json()).decode(), id=str(event.id)
                    )
                    pending = asyncio.ensure_future(anext(events))
            finally:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
                await events.aclose()

        return EventSourceResponse(
            stream(),
            ping=feed.HEARTBEAT_SECONDS,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return [Route(PATH, events, methods=["GET"])]

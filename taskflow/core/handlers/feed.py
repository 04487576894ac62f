"""What changed: the audit log as a feed a client reads by position (`taskflow.core.feed`).

`list_changes` is the feed for clients that cannot hold a stream open (MCP tools, scripts):
pass the `next_after` of the previous answer as `after` and get what came since, in the order
the feed guarantees (nothing can commit behind a position once passed). The live forms (SSE
`GET /api/events`, `taskflow watch`) read the same log with the same visibility and filters.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from taskflow.core import feed
from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.handlers.tasks import BIGINT_MAX
from taskflow.core.schemas import AuditEntryOut, Handle, Model, ProjectRef
from taskflow.core.uow import UnitOfWork

TOOLSET = "feed"


class FeedFilter(Model):
    project: ProjectRef | None = None
    task_id: Annotated[
        int | None,
        Field(default=None, ge=1, le=BIGINT_MAX, description="With its subtree"),
    ]
    actor: Handle | None = None
    action: str | None = Field(default=None, max_length=30)
    mine: bool = Field(default=False, description="Mentions of you and your tasks only")


class ListChanges(FeedFilter):
    after: Annotated[
        int | None,
        Field(
            default=None,
            ge=0,
            le=BIGINT_MAX,
            description="next_after of your last call; omit: the latest",
        ),
    ]
    limit: int = Field(default=100, ge=1, le=500)


class Changes(Model):
    items: list[AuditEntryOut]
    next_after: int = Field(description="Pass as after next time")
    more: bool = Field(description="More changes are waiting: call again now")


async def scope_for(conn: object, actor: Actor, f: FeedFilter) -> feed.Scope:
    """The reader's scope from a filter (a project or task they cannot see is NotFound)."""
    return await feed.resolve_scope(
        conn,
        actor,
        project=f.project,
        task_id=f.task_id,
        actor_handle=f.actor,
        action=f.action,
        mine=f.mine,
    )


@declare(
    ListChanges,
    toolset=TOOLSET,
    read_only=True,
    mcp="list_changes",
    rest=Route("GET", "/api/changes"),
    cli="changes",
)
async def list_changes(cmd: ListChanges, uow: UnitOfWork, actor: Actor) -> Changes:
    """What changed since you last looked: audit entries after `after` (omit it the first time);
    filter by project, task_id (with subtree), actor, action, mine."""
    conn = await uow.session.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    scope = await scope_for(raw, actor, cmd)
    if cmd.after is None:
        events, end = await feed.recent(raw, scope, cmd.limit)
        more = False
    else:
        start = await feed.position_of(raw, cmd.after)
        events, end = await feed.read_after(raw, start, scope=scope, limit=cmd.limit)
        more = end != start and (await feed.read_after(raw, end, limit=1))[1] != end
    return Changes(
        items=[AuditEntryOut.model_validate(e.as_json()) for e in events],
        next_after=end.id,
        more=more,
    )

"""Readable resources: a task with a page of its subtree, a project, and a project's audit trail.

Resources fail with protocol errors (the SDK's convention): an unknown or hidden task is
"resource not found" (-32602), any other refusal carries the core's message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import BaseModel, ValidationError

from taskflow.core.actor import Actor
from taskflow.core.domain import is_number
from taskflow.core.errors import NotFound, TaskFlowError
from taskflow.core.schemas import AuditFilter
from taskflow.core.services import history, projects, task_queries
from taskflow.mcp_server.errors import for_agents, invalid_input
from taskflow.mcp_server.toolkit import Surface

AUDIT_PAGE = 100


async def _read(s: Surface, ctx: Context, op: Callable[[Actor], Awaitable[BaseModel]]) -> str:
    try:
        actor = await s.identity.resolve(ctx)
        return (await op(actor)).model_dump_json()
    except NotFound as exc:
        raise ResourceNotFoundError(for_agents(exc)) from None
    except TaskFlowError as exc:
        raise ResourceError(for_agents(exc)) from None
    except ValidationError as exc:
        raise ResourceError(invalid_input(exc).message) from None


def register(mcp: MCPServer, s: Surface) -> None:
    """Add the resource templates to `mcp`."""

    @mcp.resource(
        "taskflow://tasks/{id}{?limit,cursor,depth}",
        name="task",
        description=(
            "A task with a page of its subtree and rolled-up progress (JSON); "
            "?cursor=<next_cursor> reads the next page, ?limit= and ?depth= as get_task"
        ),
        mime_type="application/json",
    )
    async def task_resource(
        id: str,
        ctx: Context,
        limit: str | None = None,
        cursor: str | None = None,
        depth: str | None = None,
    ) -> str:
        if not is_number(id) or int(id) < 1:
            raise ResourceNotFoundError(f"no task {id!r}: task ids are positive integers")
        page = {"limit": limit, "cursor": cursor, "depth": depth}
        return await _read(s, ctx, lambda a: task_queries.get_task(s.db, a, int(id), **page))

    @mcp.resource(
        "taskflow://projects/{slug}",
        name="project",
        description="A project as get_project answers it (JSON)",
        mime_type="application/json",
    )
    async def project_resource(slug: str, ctx: Context) -> str:
        return await _read(s, ctx, lambda a: projects.get_project(s.db, a, slug))

    @mcp.resource(
        "taskflow://projects/{slug}/audit",
        name="project_audit",
        description=f"A project's latest {AUDIT_PAGE} audit entries, newest first (JSON page)",
        mime_type="application/json",
    )
    async def audit_resource(slug: str, ctx: Context) -> str:
        return await _read(
            s,
            ctx,
            lambda a: history.list_audit(s.db, a, AuditFilter(project=slug, limit=AUDIT_PAGE)),
        )

"""Audit tools: read the trail (per task, project or actor) and verify its hash chains."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult
from pydantic import Field

from taskflow.core.actor import Actor
from taskflow.core.schemas import AuditEntryOut, AuditFilter, Page, VerifyOut
from taskflow.core.services import history
from taskflow.mcp_server.schema import model_params
from taskflow.mcp_server.toolkit import READ_ONLY, Surface, make_tool, param

EntryId = Annotated[int | None, Field(ge=1, description="One entry by id (other filters unused)")]


def build(s: Surface) -> list[Tool]:
    """The audit tools of one server."""
    db = s.db

    async def get_audit_trail(ctx: Context, entry_id: int | None, **kw: Any) -> CallToolResult:
        async def op(actor: Actor) -> Page[AuditEntryOut]:
            if entry_id is not None:
                entry = await history.get_entry(db, actor, entry_id)
                return Page[AuditEntryOut](items=[entry])
            return await history.list_audit(db, actor, AuditFilter(**kw))

        return await s.read(ctx, op)

    async def verify_audit(ctx: Context) -> VerifyOut:
        return await s.read(ctx, lambda actor: history.verify_log(db, actor))  # type: ignore[return-value]

    return [
        make_tool(
            get_audit_trail,
            description=(
                "Who did what, newest first: filter by task_id, project, actor (handle), "
                "action or time; or entry_id for one entry. Pass next_cursor back as cursor."
            ),
            annotations=READ_ONLY,
            params=[param("entry_id", EntryId), *model_params(AuditFilter)],
            output=Page[AuditEntryOut],
        ),
        make_tool(
            verify_audit,
            description=(
                "Recompute the audit log's hash chains: ok, or the first tampered entries; "
                "plus a digest worth storing elsewhere to compare later."
            ),
            annotations=READ_ONLY,
        ),
    ]

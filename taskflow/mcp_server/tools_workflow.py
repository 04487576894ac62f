"""Workflow tools: one per verb of the status table, plus assignment and claiming work."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from taskflow.core.actor import Actor
from taskflow.core.schemas import Handle, ProjectRef, TaskOut
from taskflow.core.services import workflow
from taskflow.mcp_server.outputs import TaskState
from taskflow.mcp_server.toolkit import (
    ADDITIVE,
    IDEMPOTENT,
    REQUIRED,
    ExpectedVersion,
    IdempotencyKey,
    Surface,
    TaskId,
    make_tool,
    param,
)

Percent = Annotated[int, Field(ge=0, le=100, description="0..100")]
Note = Annotated[str | None, Field(max_length=2000, description="Optional note for the log")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, description="What must change")]
Assignee = Annotated[str | None, Field(pattern=r"^@[a-z0-9_-]+$", description="Handle, or null")]
Tags = Annotated[list[str] | None, Field(max_length=50, description="Any of these tags")]

_Verb = Callable[..., Awaitable[TaskOut]]

# name -> (core verb, description, annotations, parameters beyond the task id). The extra
# parameters are passed to the verb positionally, in this order, after the task id.
_VERBS: dict[str, tuple[_Verb, str, ToolAnnotations, list[inspect.Parameter]]] = {
    "start_task": (
        workflow.start,
        "Start work: pending or blocked -> in_progress. An unassigned task becomes yours.",
        IDEMPOTENT,
        [],
    ),
    "request_review": (
        workflow.request_review,
        "Ask for review: in_progress (or completed, to reopen) -> review. Another member then "
        "calls approve_task or reject_task.",
        IDEMPOTENT,
        [],
    ),
    "complete_task": (
        workflow.complete,
        "Mark done (progress 100) from in_progress or review. In projects that require review, "
        "only approve_task completes.",
        IDEMPOTENT,
        [],
    ),
    "unblock_task": (
        workflow.unblock,
        "Unblock: back to in_progress if someone has it, else pending.",
        IDEMPOTENT,
        [],
    ),
    "update_progress": (
        workflow.progress,
        "Report progress (percent 0..100, optional note) on an in_progress task.",
        ADDITIVE,
        [param("percent", Percent, REQUIRED), param("note", Note)],
    ),
    "approve_task": (
        workflow.approve,
        "Approve a task in review: it becomes completed. Nobody approves their own work.",
        IDEMPOTENT,
        [param("note", Note)],
    ),
    "reject_task": (
        workflow.reject,
        "Reject a task in review with a reason the assignee can act on: back to in_progress.",
        IDEMPOTENT,
        [param("reason", Reason, REQUIRED)],
    ),
    "assign_task": (
        workflow.assign,
        "Give a task to a project member by handle (see list_workers), or null to unassign.",
        ADDITIVE,
        [param("assignee", Assignee, REQUIRED)],
    ),
    "delegate_task": (
        workflow.delegate,
        "Hand your task over to another member (admins may delegate anyone's).",
        ADDITIVE,
        [param("to", Handle, REQUIRED)],
    ),
    "block_task": (
        workflow.block,
        "Mark a pending or in_progress task blocked, with an optional reason.",
        IDEMPOTENT,
        [param("reason", Note)],
    ),
}

_COMMON = [param("expected_version", ExpectedVersion), param("idempotency_key", IdempotencyKey)]


def _verb(
    s: Surface,
    name: str,
    verb: _Verb,
    text: str,
    annotations: ToolAnnotations,
    extra: list[inspect.Parameter],
) -> Tool:
    """One tool per task verb, built from its table row: every verb takes the task id, its
    `extra` arguments and the common version/idempotency ones, so only the row differs."""

    async def tool(ctx: Context, task_id: int, **kw: Any) -> CallToolResult:
        async def op(actor: Actor) -> TaskState:
            args = [kw[p.name] for p in extra]
            return TaskState.of(
                await verb(s.db, actor, task_id, *args, expected_version=kw["expected_version"])
            )

        return await s.write(ctx, name, {"task_id": task_id, **kw}, op, TaskState)

    tool.__name__ = name
    return make_tool(
        tool,
        description=text,
        annotations=annotations,
        params=[param("task_id", TaskId, REQUIRED), *extra, *_COMMON],
        output=TaskState,
    )


def build(s: Surface) -> list[Tool]:
    """The workflow tools of one server, bound to its runtime and identity."""
    db = s.db
    verbs = [_verb(s, name, *row) for name, row in _VERBS.items()]

    async def claim_next_task(
        ctx: Context,
        project: ProjectRef | None = None,
        tags: Tags = None,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskOut:
        args = {"project": project, "tags": tags, "idempotency_key": idempotency_key}
        return await s.write(  # type: ignore[return-value]
            ctx,
            "claim_next_task",
            args,
            lambda actor: workflow.claim_next(db, actor, project, tags),
            TaskOut,
        )

    claim = make_tool(
        claim_next_task,
        description=(
            "Take the next open task to work on: the most urgent pending, unassigned leaf task "
            "in your projects is assigned to you and started, atomically (never to two agents)."
        ),
        annotations=ADDITIVE,
    )
    return [*verbs, claim]

"""The workflow verbs: each endpoint is one core verb on one task, honouring If-Match."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskflow.core.domain import TaskStatus
from taskflow.core.schemas import TaskOut
from taskflow.core.services import workflow
from taskflow.http.bodies import (
    Approval,
    Assignment,
    Blocking,
    ClaimRequest,
    Delegation,
    DueDateChange,
    ProgressUpdate,
    Rejection,
    StatusChange,
)
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("workflow")

# PATCH .../status names the status; the verb that reaches it does the work (and the audit).
STATUS_VERBS: dict[TaskStatus, Callable[..., Awaitable[TaskOut]]] = {
    TaskStatus.IN_PROGRESS: workflow.start,
    TaskStatus.REVIEW: workflow.request_review,
    TaskStatus.COMPLETED: workflow.complete,
    TaskStatus.BLOCKED: workflow.block,
    TaskStatus.PENDING: workflow.unblock,
}


def _task_verb(path: str, **options: Any) -> Callable[..., Any]:
    return endpoints.route(
        options.pop("method", "POST"), path, response=TaskOut, precondition=True, **options
    )


async def _on_task(call: Call, verb: Callable[..., Awaitable[TaskOut]], *args: Any) -> TaskOut:
    """Run a workflow verb on the path's task, based on the If-Match version: every task
    endpoint passes the same three things, so only the verb and its own arguments differ."""
    task_id = call.path["task_id"]
    return await verb(call.db, call.actor, task_id, *args, expected_version=call.version())


@_task_verb("/api/tasks/{task_id}/status", method="PATCH", body=StatusChange)
async def change_status(call: Call) -> TaskOut:
    """Move a task to a status by running the workflow verb that reaches it.

    in_progress runs start, review runs request_review, completed runs complete, blocked runs
    block, pending runs unblock (which resumes an assigned task as in_progress). Moves the
    transition table does not allow get 409 naming the moves that are allowed.
    """
    return await _on_task(call, STATUS_VERBS[call.body.status])


@_task_verb(
    "/api/tasks/{task_id}/progress", method="PATCH", operation="progress", body=ProgressUpdate
)
async def update_progress(call: Call) -> TaskOut:
    """Report progress (0..100) with an optional note; the task must be in_progress."""
    body: ProgressUpdate = call.body
    return await _on_task(call, workflow.progress, body.progress_percent, body.note)


@_task_verb("/api/tasks/{task_id}/assign", method="PATCH", operation="assign", body=Assignment)
async def assign_task(call: Call) -> TaskOut:
    """Give a task to a project member, or unassign it with null."""
    return await _on_task(call, workflow.assign, call.body.assignee)


@_task_verb(
    "/api/tasks/{task_id}/due", method="PATCH", operation="set_due_date", body=DueDateChange
)
async def set_due_date(call: Call) -> TaskOut:
    """Set a task's due date (a date means midnight UTC), or clear it with null."""
    return await _on_task(call, workflow.set_due_date, call.body.due_date)


@_task_verb("/api/tasks/{task_id}/start", operation="start")
async def start_task(call: Call) -> TaskOut:
    """Start work: pending or blocked to in_progress; an unassigned task becomes yours."""
    return await _on_task(call, workflow.start)


@_task_verb("/api/tasks/{task_id}/review", operation="request_review")
async def request_review(call: Call) -> TaskOut:
    """Ask for review: in_progress to review."""
    return await _on_task(call, workflow.request_review)


@_task_verb("/api/tasks/{task_id}/approve", operation="approve", body=Approval)
async def approve_task(call: Call) -> TaskOut:
    """Approve a task in review: it is completed. Nobody approves their own work."""
    return await _on_task(call, workflow.approve, call.body.note)


@_task_verb("/api/tasks/{task_id}/reject", operation="reject", body=Rejection)
async def reject_task(call: Call) -> TaskOut:
    """Reject a task in review with a reason: it goes back to in_progress."""
    return await _on_task(call, workflow.reject, call.body.reason)


@_task_verb("/api/tasks/{task_id}/complete", operation="complete")
async def complete_task(call: Call) -> TaskOut:
    """Complete a task (progress 100). Under a review-required policy, approve instead."""
    return await _on_task(call, workflow.complete)


@_task_verb("/api/tasks/{task_id}/delegate", operation="delegate", body=Delegation)
async def delegate_task(call: Call) -> TaskOut:
    """Hand your task to another member (admins may delegate anyone's)."""
    return await _on_task(call, workflow.delegate, call.body.to)


@_task_verb("/api/tasks/{task_id}/block", operation="block", body=Blocking)
async def block_task(call: Call) -> TaskOut:
    """Mark a task blocked, optionally saying why."""
    return await _on_task(call, workflow.block, call.body.reason)


@_task_verb("/api/tasks/{task_id}/unblock", operation="unblock")
async def unblock_task(call: Call) -> TaskOut:
    """Unblock a task: back to in_progress if assigned, pending otherwise."""
    return await _on_task(call, workflow.unblock)


@endpoints.post(
    "/api/projects/{project}/claim", operation="claim_next", body=ClaimRequest, response=TaskOut
)
async def claim_task(call: Call) -> TaskOut:
    """Atomically take the most urgent open unassigned task: it is assigned to you and started.

    Any number of agents may claim at once; no task is ever claimed twice. 404 when there is
    nothing to claim.
    """
    return await workflow.claim_next(
        call.db, call.actor, call.path["project"], call.body.tags or None
    )

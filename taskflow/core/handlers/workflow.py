"""The workflow verbs: commands, handlers and declarations.

Each verb locks the task, checks role and version, asks the transition rules
(`taskflow.core.handlers.transitions`) for the move, and writes the change with its entry. A
verb repeated on a task already where it leads (start an in_progress task you hold, block a
blocked task) answers the task as it is: no entry, and the version does not move, which is how
a caller tells "unchanged" from "done now". Refusals carry the next step as data (`NextStep`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import schemas
from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare, operation_for
from taskflow.core.domain import HANDLE_RE, AuditAction, TaskStatus
from taskflow.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from taskflow.core.handlers import leases, recurring
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.task_rows import Locked
from taskflow.core.handlers.task_view import open_blocker_sql
from taskflow.core.handlers.tasks import TaskId, Version
from taskflow.core.handlers.transitions import (
    check_may_reassign,
    history,
    plan_move,
    step,
    workers_of,
)
from taskflow.core.models import Worker
from taskflow.core.schemas import Handle, Model, ProjectRef, TaskOut, TaskState
from taskflow.core.uow import UnitOfWork

WORKFLOW = "workflow"
BOARD = "board"  # moving a task to a named status, as a kanban board's columns do (opt-in on MCP)


def _handle(value: str) -> str:
    """Checked here rather than as a schema pattern, which every agent would read again."""
    if len(value) > 100 or not HANDLE_RE.match(value):
        raise ValueError("a worker handle such as @claude-code")
    return value


BareHandle = Annotated[str, AfterValidator(_handle)]
Note = Annotated[str | None, Field(default=None, max_length=2000)]


class TaskVerb(Model):
    task_id: TaskId
    expected_version: Version = None


class Start(TaskVerb):
    pass


class Progress(TaskVerb):
    percent: Annotated[
        schemas.Percent,
        Field(validation_alias=AliasChoices("percent", "progress_percent")),
    ]
    note: Note = None


class RequestReview(TaskVerb):
    reviewer: BareHandle | None = None


class Approve(TaskVerb):
    note: Note = None


class Reject(TaskVerb):
    reason: str = Field(min_length=1, max_length=2000, description="What must change")


class Complete(TaskVerb):
    pass


class Assign(TaskVerb):
    assignee: Handle | None = Field(description="The new assignee's handle; null unassigns")


class Delegate(TaskVerb):
    to: Handle


class Block(TaskVerb):
    reason: Note = None


class Unblock(TaskVerb):
    pass


VERB_FOR_STATUS: dict[TaskStatus, type[TaskVerb]] = {
    TaskStatus.IN_PROGRESS: Start,
    TaskStatus.REVIEW: RequestReview,
    TaskStatus.COMPLETED: Complete,
    TaskStatus.BLOCKED: Block,
    TaskStatus.PENDING: Unblock,
}
"""The verb that moves a task into each status, for `move_task`, which names the status rather
than the verb: the verb does the work and writes its entry."""


class MoveTask(TaskVerb):
    status: TaskStatus


class SetDueDate(TaskVerb):
    due_date: Annotated[
        datetime | None,
        BeforeValidator(schemas.to_datetime),
        AfterValidator(schemas.aware),
        Field(description="A date or date-time; null clears"),
    ]


class ReopenTask(TaskVerb):
    pass


class ClaimNext(Model):
    project: ProjectRef | None = None
    tags: list[schemas.Tag] = Field(default_factory=list, max_length=50, description="Any of these")
    lease_seconds: schemas.LeaseSeconds = None


async def _lock(uow: UnitOfWork, actor: Actor, cmd: TaskVerb) -> Locked:
    return await rows.lock_task(
        uow.session, actor, cmd.task_id, expected_version=cmd.expected_version
    )


async def _write(
    uow: UnitOfWork,
    actor: Actor,
    locked: Locked,
    values: dict[str, Any],
    action: AuditAction,
    extra: dict[str, Any] | None = None,
) -> TaskOut:
    """Apply `values` with their entry, or, when they change nothing, write nothing."""
    changes = rows.changes_of(locked, values)
    if not changes:
        return await rows.read_task(uow.session, locked.id)
    details = {"changes": changes, **(extra or {})}
    answer = await rows.apply_change(uow.session, actor, locked, values, action, details)
    if "status" in changes and answer.status is TaskStatus.COMPLETED:
        await recurring.next_occurrence(uow.session, actor, locked)
    return answer


async def _move(
    uow: UnitOfWork,
    actor: Actor,
    cmd: TaskVerb,
    target: TaskStatus,
    verb: str,
    extra: dict[str, Any] | None = None,
) -> TaskOut:
    """Lock, plan the move by the shared rules, write it (nothing when already there)."""
    locked = await _lock(uow, actor, cmd)
    move = await plan_move(uow.session, actor, locked, target, verb)
    if move is None:
        return await rows.read_task(uow.session, locked.id)
    return await _write(uow, actor, locked, move.values, move.action, extra)


_TASK = TaskState  # the compact answer workflow tools give on MCP


@declare(
    Start,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="start_task",
    rest=Route("POST", "/api/tasks/{task_id}/start"),
    cli="start",
    mcp_output=_TASK,
)
async def start(cmd: Start, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Start work: pending/blocked -> in_progress; unassigned becomes yours. The review's
    requester may start it to withdraw the request."""
    locked = await _lock(uow, actor, cmd)
    if locked.status is TaskStatus.IN_PROGRESS and locked.row["assignee_id"] not in (
        None,
        actor.worker_id,
    ):
        raise InvalidTransition(
            f"task {locked.id} is already in progress with someone else: ask its assignee, or "
            "have it delegated to you",
            next_step=step("get_task", locked.id),
        )
    move = await plan_move(uow.session, actor, locked, TaskStatus.IN_PROGRESS, "start")
    if move is None:
        return await rows.read_task(uow.session, locked.id)
    return await _write(uow, actor, locked, move.values, move.action)


@declare(
    Progress,
    toolset=WORKFLOW,
    mcp="update_progress",
    rest=Route("PATCH", "/api/tasks/{task_id}/progress"),
    cli="progress",
    mcp_output=_TASK,
)
async def progress(cmd: Progress, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Report progress (percent 0..100, optional note) on an in_progress task."""
    locked = await _lock(uow, actor, cmd)
    if locked.status is not TaskStatus.IN_PROGRESS:
        after = {
            TaskStatus.PENDING: "start it first",
            TaskStatus.COMPLETED: "reopen it, then start it",
        }.get(locked.status, "start it again")
        verb = "reopen_task" if locked.status is TaskStatus.COMPLETED else "start"
        raise InvalidTransition(
            f"task {cmd.task_id} is {locked.status}: progress needs in_progress ({after})",
            next_step=step(verb, cmd.task_id),
        )
    leased = (
        locked.row["lease_expires_at"] is not None and locked.row["assignee_id"] == actor.worker_id
    )
    if locked.row["progress_percent"] == cmd.percent and not cmd.note:
        if leased:  # the holder reporting the same progress: its lease is renewed
            return await leases.renew(uow.session, actor, locked, None, "progress")
        return await rows.read_task(uow.session, locked.id)  # nothing new to record
    extra = {"progress_percent": cmd.percent, **({"note": cmd.note} if cmd.note else {})}
    details = {"changes": rows.changes_of(locked, {"progress_percent": cmd.percent}), **extra}
    values: dict[str, Any] = {"progress_percent": cmd.percent}
    if leased:  # progress by the holder renews its claim's lease, in the same update
        values.update(leases.lease_values(locked.row["lease_seconds"] or _lease_of(locked)))
        details["lease_renewed"] = True
    return await rows.apply_change(
        uow.session, actor, locked, values, AuditAction.PROGRESSED, details
    )


@declare(
    RequestReview,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="request_review",
    rest=Route("POST", "/api/tasks/{task_id}/review"),
    cli="review",
    mcp_output=_TASK,
)
async def request_review(cmd: RequestReview, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Ask for review: in_progress -> review; another member, or the named reviewer, decides."""
    if cmd.reviewer is None:
        return await _move(uow, actor, cmd, TaskStatus.REVIEW, "request_review")
    locked = await _lock(uow, actor, cmd)
    session = uow.session
    reviewer_id = await rows.worker_id_for(
        session, cmd.reviewer, locked.row["project_id"], field="reviewer"
    )
    if locked.status is TaskStatus.REVIEW and locked.row["reviewer_id"] == reviewer_id:
        return await rows.read_task(session, locked.id)  # asked already, of the same reviewer
    if locked.status is TaskStatus.REVIEW:
        raise InvalidTransition(
            f"task {locked.id} is already in review: start it to withdraw the request, then "
            f"ask {cmd.reviewer} again",
            next_step=step("start", locked.id),
        )
    move = await plan_move(session, actor, locked, TaskStatus.REVIEW, "request_review")
    assert move is not None
    worked = workers_of(await history(session, locked.id), locked.row["assignee_id"])
    if reviewer_id in worked or reviewer_id == actor.worker_id:
        raise ValidationFailed(
            f"{cmd.reviewer} worked on task {locked.id}: name a member who did not, since "
            "nobody approves their own work",
            field="reviewer",
        )
    values = {**move.values, "reviewer_id": reviewer_id}
    return await _write(uow, actor, locked, values, move.action, {"reviewer": cmd.reviewer})


def _needs_review(locked: Locked) -> None:
    if locked.status is not TaskStatus.REVIEW:
        raise InvalidTransition(
            f"task {locked.id} is {locked.status}, not in review: ask for a review first",
            next_step=step("request_review", locked.id),
        )


@declare(
    Approve,
    toolset=WORKFLOW,
    mcp="approve_task",
    rest=Route("POST", "/api/tasks/{task_id}/approve"),
    cli="approve",
    mcp_output=_TASK,
)
async def approve(cmd: Approve, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Approve a review: completed. Not your own work; a named reviewer's or an admin's."""
    locked = await _lock(uow, actor, cmd)
    _needs_review(locked)
    move = await plan_move(uow.session, actor, locked, TaskStatus.COMPLETED, "approve")
    assert move is not None
    extra = {"note": cmd.note} if cmd.note else {}
    return await _write(uow, actor, locked, move.values, move.action, extra)


@declare(
    Reject,
    toolset=WORKFLOW,
    mcp="reject_task",
    rest=Route("POST", "/api/tasks/{task_id}/reject"),
    cli="reject",
    mcp_output=_TASK,
)
async def reject(cmd: Reject, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Reject a task in review with a reason to act on: back to in_progress."""
    reason = cmd.reason.strip()
    if not reason:
        raise ValidationFailed("a rejection needs a reason the assignee can act on", field="reason")
    locked = await _lock(uow, actor, cmd)
    _needs_review(locked)
    move = await plan_move(uow.session, actor, locked, TaskStatus.IN_PROGRESS, "reject")
    assert move is not None
    return await _write(uow, actor, locked, move.values, move.action, {"reason": reason})


@declare(
    Complete,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="complete_task",
    rest=Route("POST", "/api/tasks/{task_id}/complete"),
    cli="complete",
    mcp_output=_TASK,
)
async def complete(cmd: Complete, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Complete an in_progress task after its subtasks (100%); recurring ones recur."""
    return await _move(uow, actor, cmd, TaskStatus.COMPLETED, "complete")


async def _reassign(
    uow: UnitOfWork,
    actor: Actor,
    cmd: TaskVerb,
    handle: str | None,
    verb: str,
) -> tuple[Locked, dict[str, Any], str | None]:
    """The one assignment rule of assign and delegate: lock, check, resolve the new holder."""
    locked = await _lock(uow, actor, cmd)
    new_id = (
        await rows.worker_id_for(uow.session, handle, locked.row["project_id"]) if handle else None
    )
    if new_id != locked.row["assignee_id"]:
        check_may_reassign(locked, actor, verb)
    previous = await rows.handle_of(uow.session, locked.row["assignee_id"])
    return locked, {"assignee_id": new_id}, previous


@declare(
    Assign,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="assign_task",
    rest=Route("PATCH", "/api/tasks/{task_id}/assign"),
    cli="assign",
    mcp_output=_TASK,
)
async def assign(cmd: Assign, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Give a task to a member (handle), or null to unassign; same rule as delegate_task."""
    locked, values, previous = await _reassign(uow, actor, cmd, cmd.assignee, "assign")
    extra = {"assignee": cmd.assignee, "from": previous}
    return await _write(uow, actor, locked, values, AuditAction.ASSIGNED, extra)


@declare(
    Delegate,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="delegate_task",
    rest=Route("POST", "/api/tasks/{task_id}/delegate"),
    cli="delegate",
    mcp_output=_TASK,
)
async def delegate(cmd: Delegate, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Hand a task on: its assignee, anyone while unassigned, or a project admin may."""
    locked, values, previous = await _reassign(uow, actor, cmd, cmd.to, "delegate")
    extra = {"to": cmd.to, "from": previous}
    return await _write(uow, actor, locked, values, AuditAction.DELEGATED, extra)


@declare(
    Block,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="block_task",
    rest=Route("POST", "/api/tasks/{task_id}/block"),
    cli="block",
    mcp_output=_TASK,
)
async def block(cmd: Block, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Mark a pending or in_progress task blocked (optional reason)."""
    extra = {"reason": cmd.reason} if cmd.reason else {}
    return await _move(uow, actor, cmd, TaskStatus.BLOCKED, "block", extra)


@declare(
    Unblock,
    toolset=WORKFLOW,
    mcp="unblock_task",
    rest=Route("POST", "/api/tasks/{task_id}/unblock"),
    cli="unblock",
    mcp_output=_TASK,
)
async def unblock(cmd: Unblock, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Unblock a task: back to in_progress if someone has it, else pending."""
    locked = await _lock(uow, actor, cmd)
    if locked.status is not TaskStatus.BLOCKED:
        raise InvalidTransition(f"task {cmd.task_id} is {locked.status}, not blocked")
    target = TaskStatus.IN_PROGRESS if locked.row["assignee_id"] else TaskStatus.PENDING
    move = await plan_move(uow.session, actor, locked, target, "unblock")
    assert move is not None
    return await _write(uow, actor, locked, move.values, AuditAction.UNBLOCKED)


@declare(
    SetDueDate,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="set_due_date",
    rest=Route("PATCH", "/api/tasks/{task_id}/due"),
    cli="due",
    mcp_output=_TASK,
)
async def set_due_date(cmd: SetDueDate, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Set a task's due date (a date is midnight UTC), or null to clear it."""
    locked = await _lock(uow, actor, cmd)
    action = AuditAction.DUE_DATE_SET if cmd.due_date else AuditAction.DUE_DATE_CLEARED
    return await _write(uow, actor, locked, {"due_date": cmd.due_date}, action)


@declare(
    ReopenTask,
    toolset=WORKFLOW,
    idempotent=True,
    mcp="reopen_task",
    rest=Route("POST", "/api/tasks/{task_id}/reopen"),
    cli="reopen",
    mcp_output=_TASK,
)
async def reopen_task(cmd: ReopenTask, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Reopen a completed task: back to review (completed_at cleared), asked for by you."""
    return await _move(uow, actor, cmd, TaskStatus.REVIEW, "reopen_task", {"reopened": True})


@declare(
    MoveTask,
    toolset=BOARD,
    mcp="move_task",
    rest=Route("PATCH", "/api/tasks/{task_id}/status"),
    cli="move",
    mcp_output=_TASK,
)
async def move_task(cmd: MoveTask, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Move a task to a status by running the verb that reaches it (pending runs unblock)."""
    verb = VERB_FOR_STATUS[cmd.status](task_id=cmd.task_id, expected_version=cmd.expected_version)
    answer: TaskOut = await operation_for(verb).handler(verb, uow, actor)
    return answer


_CLAIM = text(
    f"""
    SELECT t.id FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.worker_id = :worker_id
    JOIN workers me ON me.id = :worker_id AND me.deactivated_at IS NULL
    WHERE t.status = 'pending' AND t.assignee_id IS NULL
      AND m.role IN ('member', 'admin', 'owner')
      AND (CAST(:project AS text) IS NULL OR t.project_id = (
            SELECT id FROM projects WHERE slug = CAST(:project AS text)
               OR CAST(id AS text) = CAST(:project AS text)
            ORDER BY slug = CAST(:project AS text) DESC LIMIT 1))
      AND (CAST(:tags AS text[]) IS NULL OR t.tags && CAST(:tags AS text[]))
      AND (CAST(:scope AS bigint[]) IS NULL OR t.project_id = ANY(CAST(:scope AS bigint[])))
      AND t.id <> ALL(CAST(:skip AS bigint[]))
      AND t.required_capabilities <@ me.capabilities
      AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id)
      AND NOT {open_blocker_sql("t")}
      AND NOT EXISTS (
            WITH RECURSIVE up(id) AS (
                SELECT t.parent_id
                UNION ALL
                SELECT a.parent_id FROM up JOIN tasks a ON a.id = up.id
                WHERE a.parent_id IS NOT NULL
            )
            SELECT 1 FROM up JOIN tasks a ON a.id = up.id
            WHERE a.status = 'in_progress' AND a.assignee_id <> :worker_id)
    ORDER BY t.priority_rank, t.due_date NULLS LAST, t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
    """
)
"""The next task a worker may claim: pending, unassigned, a leaf, in a project where it works,
needing no capability it lacks, with no open blocker, and under no ancestor another worker has
in progress (a subtree someone holds); most urgent first (priority, due date, age)."""

_CLAIM_TRIES = 5


def _lease_of(locked: Locked) -> int:
    return int(locked.row["project_lease_seconds"])


async def _refuse_deactivated_claimer(session: AsyncSession, actor: Actor) -> None:
    """Say why a deactivated worker found nothing (asked only then: claims stay one query)."""
    stmt = select(Worker.deactivated_at).where(Worker.id == actor.worker_id)
    if await session.scalar(stmt) is not None:
        raise Forbidden(f"{actor.handle} is deactivated: it cannot claim tasks")


@declare(
    ClaimNext,
    toolset=WORKFLOW,
    mcp="claim_next_task",
    rest=Route("POST", "/api/projects/{project}/claim"),
    cli="claim",
    mcp_output=schemas.ClaimedTask,
)
async def claim_next(cmd: ClaimNext, uow: UnitOfWork, actor: Actor) -> TaskOut:
    """Take the most urgent ready task (blockers done, your capabilities, no subtree another
    holds): yours, started, leased; progress renews it."""
    session = uow.session
    await leases.release_expired(session, actor, "claim_next")
    skip: list[int] = []
    for _ in range(_CLAIM_TRIES):
        task_id = await session.scalar(
            _CLAIM,
            {
                "worker_id": actor.worker_id,
                "project": cmd.project,
                "tags": cmd.tags or None,
                "skip": skip,
                "scope": actor.scopes.listed(),
            },
        )
        if task_id is None:
            break
        locked = await rows.lock_task(session, actor, task_id)
        if locked.row["open_blockers"]:  # a blocker added since the search's snapshot
            skip.append(task_id)
            continue
        seconds = cmd.lease_seconds or _lease_of(locked)
        values = {"status": TaskStatus.IN_PROGRESS.value, "assignee_id": actor.worker_id}
        details = {
            "changes": rows.changes_of(locked, values),
            "claimed_by": actor.handle,
            "lease_seconds": seconds,
        }
        values.update(leases.lease_values(seconds))
        return await rows.apply_change(session, actor, locked, values, AuditAction.CLAIMED, details)
    await _refuse_deactivated_claimer(session, actor)
    where = f" in project {cmd.project}" if cmd.project else ""
    raise NotFound(
        f"no open unassigned task to claim{where} that is ready (blockers done, needing only "
        "your capabilities, in no subtree another holds): create tasks or check back later",
        entity="task",
    )

"""The rules on a task's status moves, run by every path into a status.

Every verb (start, request_review, approve, reject, complete, block, unblock, claim, reopen) and
`edit_task(status=...)` asks `plan_move` for the new values and the audit action of a status
change, so a field edit cannot reach a state, or leave one, that the verbs guard:
- the transition table (Phase 1) decides which moves exist, and the hints in a refusal are the
  moves *this* task in *this* project offers (no `complete` where review is required);
- entering review records the review request (a `review_requested` entry), whoever asked;
- review is left only by approval, by rejection (with a reason), both from someone whose work it
  is not, or by its requester withdrawing the request (`start` or `status=in_progress`);
- "own work" is everyone who worked the task since it was last started: its assignees and
  starters since the last `started` (or `claimed`) entry, plus whoever asked for the review;
- a review that names a reviewer (`reviewer_id`) is decided by that reviewer or a project admin
  only, and the name is cleared whenever the task leaves review;
- parents finish last: completing (or approving) a task with an open descendant is refused,
  naming them, unless its project allows open subtasks (`allow_open_subtasks`);
- where review is required, nobody approves work done by an agent they registered or by whoever
  registered them (transitively): nobody approves through their own agent.
Assignment has one rule too (`check_may_reassign`), shared by assign, delegate and edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.domain import TRANSITIONS, ApprovalPolicy, AuditAction, Role, TaskStatus
from taskflow.core.errors import Forbidden, InvalidTransition, NextStep
from taskflow.core.handlers.task_rows import Locked
from taskflow.core.models import AuditEntry, Worker
from taskflow.core.services.access import kin

# The verb a status is reached by, from a given status (None: from anywhere it is allowed).
_REACHED_BY: dict[tuple[TaskStatus, TaskStatus], str] = {
    (TaskStatus.PENDING, TaskStatus.IN_PROGRESS): "start",
    (TaskStatus.BLOCKED, TaskStatus.IN_PROGRESS): "start",
    (TaskStatus.REVIEW, TaskStatus.IN_PROGRESS): "reject",
    (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW): "request_review",
    (TaskStatus.COMPLETED, TaskStatus.REVIEW): "reopen_task",
    (TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED): "complete",
    (TaskStatus.REVIEW, TaskStatus.COMPLETED): "approve",
    (TaskStatus.PENDING, TaskStatus.BLOCKED): "block",
    (TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED): "block",
    (TaskStatus.BLOCKED, TaskStatus.PENDING): "unblock",
}

# The entry a move writes when a field edit makes it: the same as the verb's, so the history
# (and the own-work rule that reads it) cannot tell an edit from the verb.
_ACTION_OF: dict[str, AuditAction] = {
    "start": AuditAction.STARTED,
    "request_review": AuditAction.REVIEW_REQUESTED,
    "reopen_task": AuditAction.REVIEW_REQUESTED,
    "approve": AuditAction.APPROVED,
    "reject": AuditAction.REJECTED,
    "complete": AuditAction.COMPLETED,
    "block": AuditAction.BLOCKED,
    "unblock": AuditAction.UNBLOCKED,
    "claim_next": AuditAction.CLAIMED,
}
_WORK_STARTS = (AuditAction.STARTED.value, AuditAction.CLAIMED.value)
_WORKED_BY_ACTOR = frozenset(
    {
        AuditAction.STARTED.value,
        AuditAction.CLAIMED.value,
        AuditAction.PROGRESSED.value,
        AuditAction.REVIEW_REQUESTED.value,
    }
)


@dataclass(frozen=True, slots=True)
class Move:
    """A planned status change: the new column values and the entry it writes."""

    values: dict[str, Any]
    action: AuditAction
    details: dict[str, Any] = field(default_factory=dict)


def step(operation: str, task_id: int) -> NextStep:
    return NextStep(operation, {"task_id": task_id})


def offered(locked: Locked) -> list[tuple[TaskStatus, str]]:
    """The moves this task offers now, with the verb of each, for this project's policy."""
    review_required = locked.approval_policy == ApprovalPolicy.REVIEW_REQUIRED
    moves = []
    for target in TaskStatus:  # in the order work goes: the forward move is the first hint
        if target not in TRANSITIONS[locked.status]:
            continue
        verb = _REACHED_BY[(locked.status, target)]
        if verb == "complete" and review_required:
            continue
        moves.append((target, verb))
    return moves


def _refuse_move(locked: Locked, target: TaskStatus) -> InvalidTransition:
    moves = offered(locked)
    options = ", ".join(str(s) for s, _ in moves) or "nothing"
    return InvalidTransition(
        f"task {locked.id} is {locked.status}: it cannot move to {target}. From "
        f"{locked.status} it can move to: {options}.",
        next_step=step(moves[0][1], locked.id) if moves else None,
        current=str(locked.status),
        target=str(target),
        allowed=[v for _, v in moves],
    )


async def history(session: AsyncSession, task_id: int) -> list[Any]:
    stmt = (
        select(AuditEntry.actor_id, AuditEntry.action, AuditEntry.details)
        .where(AuditEntry.entity_type == "task", AuditEntry.entity_id == task_id)
        .order_by(AuditEntry.seq)
    )
    return list((await session.execute(stmt)).all())


def _requester(entries: Iterable[Any]) -> int | None:
    requester = None
    for entry in entries:
        if entry.action == AuditAction.REVIEW_REQUESTED.value:
            requester = entry.actor_id
    return requester


def workers_of(entries: list[Any], assignee_id: int | None) -> set[int]:
    """Who worked the task since it was last started: starters, reporters, requesters and every
    assignee it had since (old and new of each assignment), plus its current assignee."""
    starts = [i for i, e in enumerate(entries) if e.action in _WORK_STARTS]
    since = entries[starts[-1] :] if starts else entries
    worked: set[int] = {assignee_id} if assignee_id is not None else set()
    for entry in since:
        if entry.action in _WORKED_BY_ACTOR and entry.actor_id is not None:
            worked.add(entry.actor_id)
        moved = (entry.details or {}).get("changes", {}).get("assignee_id")
        if isinstance(moved, dict):
            worked.update(v for v in (moved.get("old"), moved.get("new")) if isinstance(v, int))
    requester = _requester(entries)
    if requester is not None:
        worked.add(requester)
    return worked


async def _leave_review(
    session: AsyncSession, actor: Actor, locked: Locked, target: TaskStatus, verb: str
) -> None:
    """Only a reviewer's verdict, or the requester withdrawing, takes a task out of review."""
    entries = await history(session, locked.id)
    if verb in ("approve", "reject"):
        worked = workers_of(entries, locked.row["assignee_id"])
        if actor.worker_id in worked:
            raise Forbidden(
                f"you cannot {verb} your own work on task {locked.id}: another member must "
                "review it"
            )
        await _check_named_reviewer(session, actor, locked, verb)
        if (
            verb == "approve"
            and locked.approval_policy == ApprovalPolicy.REVIEW_REQUIRED
            and await kin(session, actor.worker_id, worked)
        ):
            raise Forbidden(
                f"you cannot {verb} task {locked.id}: it was worked by an agent you registered "
                "or by the worker who registered you (directly or down a chain), and project "
                f"{locked.row['project_slug']} requires review by someone else: another member "
                "must review it",
                rule="separation_of_duties",
            )
        return
    if target is TaskStatus.IN_PROGRESS and _requester(entries) == actor.worker_id:
        return  # the requester withdraws their own request and goes back to work
    verdict = "approve" if target is TaskStatus.COMPLETED else "reject"
    raise InvalidTransition(
        f"task {locked.id} is in review: only another member's approval or rejection (with a "
        "reason) takes it out of review, or its requester withdrawing the request by starting "
        "it again",
        next_step=step(verdict, locked.id),
        current=str(locked.status),
        target=str(target),
    )


async def _check_named_reviewer(
    session: AsyncSession, actor: Actor, locked: Locked, verb: str
) -> None:
    """A review that names its reviewer is theirs to decide, or a project admin's."""
    reviewer = locked.row["reviewer_id"]
    if reviewer is None or reviewer == actor.worker_id:
        return
    if locked.role in (Role.ADMIN, Role.OWNER):
        return
    handle = await session.scalar(select(Worker.handle).where(Worker.id == reviewer))
    raise Forbidden(
        f"task {locked.id} is waiting for {handle}'s review: only {handle} or a project admin "
        f"can {verb} it"
    )


_OPEN_BELOW = text(
    """
    WITH RECURSIVE sub AS (
        SELECT c.id FROM tasks c WHERE c.parent_id = :task_id
        UNION ALL
        SELECT c.id FROM sub
        CROSS JOIN LATERAL (SELECT c.id FROM tasks c WHERE c.parent_id = sub.id OFFSET 0) c
    )
    SELECT t.id, t.title, t.status FROM sub JOIN tasks t ON t.id = sub.id
    WHERE t.status <> 'completed'
    ORDER BY t.id
    LIMIT :limit
    """
)
OPEN_LISTED = 20  # open descendants named in a refusal; more are counted as "and more"


async def _check_parents_finish_last(session: AsyncSession, locked: Locked) -> None:
    """A task is completed after its whole subtree, unless its project allows otherwise."""
    if locked.allow_open_subtasks:
        return
    found = (
        await session.execute(_OPEN_BELOW, {"task_id": locked.id, "limit": OPEN_LISTED + 1})
    ).all()
    if not found:
        return
    listed = ", ".join(f"#{r.id} {r.title!r} ({r.status})" for r in found[:OPEN_LISTED])
    more = " and more" if len(found) > OPEN_LISTED else ""
    raise InvalidTransition(
        f"task {locked.id} has open subtasks: {listed}{more}. Complete them first (parents "
        f"finish last), or have an owner of project {locked.row['project_slug']} allow open "
        "subtasks",
        next_step=step("get_task", locked.id),
        current=str(locked.status),
        target=str(TaskStatus.COMPLETED),
        open_subtasks=[r.id for r in found[:OPEN_LISTED]],
    )


async def plan_move(
    session: AsyncSession, actor: Actor, locked: Locked, target: TaskStatus, verb: str
) -> Move | None:
    """The values and entry of moving `locked` to `target` by `verb` ("edit" for a field
    edit), or None when it already is there (the caller writes nothing). Refuses what the
    rules above refuse, naming the next step as data."""
    current = locked.status
    if target is current:
        return None
    if target not in TRANSITIONS[current]:
        raise _refuse_move(locked, target)
    natural = _REACHED_BY[(current, target)]
    if (
        target is TaskStatus.COMPLETED
        and verb != "approve"
        and locked.approval_policy == ApprovalPolicy.REVIEW_REQUIRED
    ):
        raise InvalidTransition(
            f"project {locked.row['project_slug']} requires review: ask for a review of task "
            f"{locked.id}, then another member approves it",
            next_step=step(
                "request_review" if current is TaskStatus.IN_PROGRESS else "approve", locked.id
            ),
        )
    if current is TaskStatus.REVIEW:
        await _leave_review(session, actor, locked, target, verb)
    if target is TaskStatus.COMPLETED:
        await _check_parents_finish_last(session, locked)
    values: dict[str, Any] = {"status": target.value}
    if current is TaskStatus.REVIEW and locked.row["reviewer_id"] is not None:
        values["reviewer_id"] = None  # a named reviewer is named for one review
    if target is TaskStatus.COMPLETED:
        values["progress_percent"] = 100
    starting = target is TaskStatus.IN_PROGRESS and current in (
        TaskStatus.PENDING,
        TaskStatus.BLOCKED,
    )
    open_blockers = locked.row.get("open_blockers")
    if starting and open_blockers:
        named = ", ".join(str(i) for i in open_blockers)
        raise InvalidTransition(
            f"task {locked.id} waits for open task {named}: it starts once they are completed",
            next_step=step("get_task", open_blockers[0]),
            current=str(current),
            target=str(target),
            open_blockers=list(open_blockers),
        )
    if starting and locked.row["assignee_id"] is None:
        values["assignee_id"] = actor.worker_id  # an unassigned task becomes the starter's
    action_verb = natural if verb == "edit" else verb
    if current is TaskStatus.REVIEW and target is TaskStatus.IN_PROGRESS and verb != "reject":
        action_verb = "start"  # the requester's withdrawal starts the work again
    return Move(values=values, action=_ACTION_OF[action_verb])


def check_may_reassign(locked: Locked, actor: Actor, verb: str) -> None:
    """Who holds a task changes only by its holder, when nobody holds it, or by a project admin:
    the one rule of assign, delegate and `edit_task(assignee=...)`."""
    holder = locked.row["assignee_id"]
    if holder in (None, actor.worker_id) or locked.role in (Role.ADMIN, Role.OWNER):
        return
    raise Forbidden(
        f"task {locked.id} is assigned to someone else: only its assignee or a project admin "
        f"can {verb} it"
    )

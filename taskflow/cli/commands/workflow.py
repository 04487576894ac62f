"""The workflow verbs: start, progress, complete, review, approve, reject, delegate, assign,
block, unblock, reopen, move (to a named status), and claim (an agent's "give me the next task")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from rich.markup import escape

from taskflow.cli.output import answer
from taskflow.cli.params import Json, TaskId, clears
from taskflow.cli.session import Session, call
from taskflow.core.dispatcher import run
from taskflow.core.domain import TaskStatus
from taskflow.core.handlers import workflow as ops
from taskflow.core.schemas import TaskOut
from taskflow.core.services import workflow


def _apply(
    work: Callable[[Session], Awaitable[TaskOut]], json_: bool, message: Callable[[TaskOut], str]
) -> None:
    task = call(work)
    answer(task, json_, message(task))


def _label(task: TaskOut) -> str:
    return f"[bold]#{task.id}[/] {escape(task.title)}"


def start(task_id: TaskId, json_: Json = False) -> None:
    """Start working on a task (an unassigned task becomes yours)."""
    _apply(
        lambda s: workflow.start(s.db, s.actor, task_id),
        json_,
        lambda t: f"Started {_label(t)} (assigned to {t.assignee})",
    )


def progress(
    task_id: TaskId,
    percent: Annotated[int, typer.Option("--percent", help="0..100", min=0, max=100)],
    note: Annotated[str | None, typer.Option("--note", help="What you did.")] = None,
    json_: Json = False,
) -> None:
    """Record progress on a task in progress."""
    _apply(
        lambda s: workflow.progress(s.db, s.actor, task_id, percent, note),
        json_,
        lambda t: f"{_label(t)} is at {t.progress_percent}%",
    )


def complete(task_id: TaskId, json_: Json = False) -> None:
    """Mark a task completed."""
    _apply(
        lambda s: workflow.complete(s.db, s.actor, task_id),
        json_,
        lambda t: f"Completed {_label(t)}",
    )


def review(
    task_id: TaskId,
    reviewer: Annotated[
        str | None,
        typer.Option("--reviewer", help="Only this member (or a project admin) may decide it."),
    ] = None,
    json_: Json = False,
) -> None:
    """Ask for a review of a task (of a named reviewer with --reviewer)."""
    _apply(
        lambda s: workflow.request_review(s.db, s.actor, task_id, reviewer=reviewer),
        json_,
        lambda t: (
            f"{_label(t)} is waiting for "
            + (f"{escape(t.reviewer)}'s review" if t.reviewer else "review")
        ),
    )


def approve(
    task_id: TaskId,
    note: Annotated[str | None, typer.Option("--note", help="A word for the record.")] = None,
    json_: Json = False,
) -> None:
    """Approve a task in review (it becomes completed)."""
    _apply(
        lambda s: workflow.approve(s.db, s.actor, task_id, note),
        json_,
        lambda t: f"Approved {_label(t)}",
    )


def reject(
    task_id: TaskId,
    reason: Annotated[str, typer.Option("--reason", help="What must change.")],
    json_: Json = False,
) -> None:
    """Reject a task in review, with a reason (it goes back to in_progress)."""
    _apply(
        lambda s: workflow.reject(s.db, s.actor, task_id, reason),
        json_,
        lambda t: f"Rejected {_label(t)}: back to in_progress",
    )


def delegate(
    task_id: TaskId,
    to: Annotated[str, typer.Option("--to", help="Handle of the new assignee.")],
    json_: Json = False,
) -> None:
    """Hand a task to another worker."""
    _apply(
        lambda s: workflow.delegate(s.db, s.actor, task_id, to),
        json_,
        lambda t: f"Delegated {_label(t)} to {t.assignee}",
    )


def assign(
    task_id: TaskId,
    handle: Annotated[str, typer.Argument(help="Assignee handle, or 'none' to unassign.")],
    json_: Json = False,
) -> None:
    """Assign a task to a member (or 'none' to unassign)."""
    who = None if clears(handle) else handle
    _apply(
        lambda s: workflow.assign(s.db, s.actor, task_id, who),
        json_,
        lambda t: f"{_label(t)} is assigned to {t.assignee or 'nobody'}",
    )


def block(
    task_id: TaskId,
    reason: Annotated[str | None, typer.Option("--reason", help="What it waits for.")] = None,
    json_: Json = False,
) -> None:
    """Mark a task blocked."""
    _apply(
        lambda s: workflow.block(s.db, s.actor, task_id, reason),
        json_,
        lambda t: f"Blocked {_label(t)}",
    )


def unblock(task_id: TaskId, json_: Json = False) -> None:
    """Unblock a task (back to in_progress if assigned, else pending)."""
    _apply(
        lambda s: workflow.unblock(s.db, s.actor, task_id),
        json_,
        lambda t: f"Unblocked {_label(t)}: now {t.status}",
    )


def reopen(task_id: TaskId, json_: Json = False) -> None:
    """Reopen a completed task: it goes back to review."""
    _apply(
        lambda s: run(s.db, s.actor, ops.ReopenTask(task_id=task_id)),
        json_,
        lambda t: f"Reopened {_label(t)}: waiting for review",
    )


def move(
    task_id: TaskId,
    status: Annotated[TaskStatus, typer.Argument(help="Where the task goes.")],
    json_: Json = False,
) -> None:
    """Move a task to a status by running the verb that reaches it."""
    _apply(
        lambda s: run(s.db, s.actor, ops.MoveTask(task_id=task_id, status=status)),
        json_,
        lambda t: f"{_label(t)} is now {t.status}",
    )


def claim(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only here.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="With any of these tags.")] = None,
    lease: Annotated[
        int | None,
        typer.Option("--lease", help="Hold it this many seconds (default: the project's).", min=1),
    ] = None,
    json_: Json = False,
) -> None:
    """Take the most urgent ready task (assigns and starts it, atomically, with a lease)."""
    _apply(
        lambda s: run(
            s.db, s.actor, ops.ClaimNext(project=project, tags=tag or [], lease_seconds=lease)
        ),
        json_,
        lambda t: (
            f"Claimed {_label(t)} in {escape(t.project)}: it is yours and in progress until "
            f"{t.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC (progress or `taskflow heartbeat` renews)"
        ),
    )


def register(app: typer.Typer) -> None:
    for command in (
        start,
        progress,
        complete,
        review,
        approve,
        reject,
        delegate,
        assign,
        block,
        unblock,
        reopen,
        move,
        claim,
    ):
        app.command()(command)

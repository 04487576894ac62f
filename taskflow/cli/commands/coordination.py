"""Coordination: what a task waits for (`depend`) and keeping a claim alive (`heartbeat`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from taskflow.cli.output import USAGE, answer, fail
from taskflow.cli.params import Json, TaskId
from taskflow.cli.session import call
from taskflow.core.dispatcher import run
from taskflow.core.handlers.coordination import ChangeDependencies, Heartbeat
from taskflow.core.schemas import TaskOut


def _waits(task: TaskOut) -> str:
    if not task.blocked_by:
        return "waits for nothing"
    listed = ", ".join(f"#{b.id}{' (done)' if b.done else ''}" for b in task.blocked_by)
    return f"waits for {listed}"


def depend(
    task_id: TaskId,
    on: Annotated[
        list[int] | None, typer.Option("--on", help="A blocker to add (repeatable).", min=1)
    ] = None,
    remove: Annotated[
        int | None, typer.Option("--remove", help="A blocker to remove.", min=1)
    ] = None,
    json_: Json = False,
) -> None:
    """Make TASK_ID wait for other tasks (--on), or stop waiting for one (--remove)."""
    if not on and remove is None:
        fail("nothing to change: give --on ID (repeatable) or --remove ID", USAGE)
    cmd = ChangeDependencies(task_id=task_id, blocked_by=on or [], blocker_id=remove)
    task = call(lambda s: run(s.db, s.actor, cmd))
    answer(task, json_, f"[bold]#{task.id}[/] {escape(task.title)} {_waits(task)}")


def heartbeat(
    task_id: TaskId,
    lease: Annotated[
        int | None, typer.Option("--lease", help="Renew for this many seconds.", min=1)
    ] = None,
    json_: Json = False,
) -> None:
    """Renew your claim's lease on TASK_ID (progress renews it too)."""
    task = call(lambda s: run(s.db, s.actor, Heartbeat(task_id=task_id, lease_seconds=lease)))
    until = f"{task.lease_expires_at:%Y-%m-%d %H:%M:%S}" if task.lease_expires_at else "?"
    answer(task, json_, f"[bold]#{task.id}[/] {escape(task.title)} is yours until {until} UTC")


def register(app: typer.Typer) -> None:
    for command in (depend, heartbeat):
        app.command()(command)

"""Phase 1's task commands: add, subtask, list, show, edit, delete, search, due dates."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from taskflow.cli.output import USAGE, emit_json, fail, out, success
from taskflow.cli.params import (
    Json,
    PriorityOpt,
    TaskId,
    build,
    build_exact,
    clears,
    parse_date,
    split_tags,
)
from taskflow.cli.render import task_panel, task_tree
from taskflow.cli.session import Session, call
from taskflow.core.dispatcher import run
from taskflow.core.domain import TaskStatus
from taskflow.core.errors import Forbidden
from taskflow.core.handlers.comments import CommentOut, ListComments
from taskflow.core.schemas import (
    CreateTask,
    EditTask,
    SubtaskSpec,
    TaskDetail,
    TaskOut,
)
from taskflow.core.services import task_queries, tasks, workflow

Description = Annotated[str | None, typer.Option("--description", "-d", help="Longer text.")]
Assign = Annotated[str | None, typer.Option("--assign", "-a", help="Assignee handle (@w).")]
TagsOpt = Annotated[str | None, typer.Option("--tags", help="Comma-separated tags: a,b")]
Due = Annotated[str | None, typer.Option("--due", help="Due date, YYYY-MM-DD (UTC).")]
RecurrenceOpt = Annotated[
    str | None,
    typer.Option(
        "--recurrence",
        "-r",
        help="daily, weekly, monthly, 'every N days|weeks' or an RRULE (FREQ=WEEKLY;BYDAY=MO).",
    ),
]
Needs = Annotated[str | None, typer.Option("--needs", help="Capabilities a claimer must have: a,b")]
CreatedBy = Annotated[
    str | None,
    typer.Option("--created-by", help="Phase 1 option; must be you (the signed-in worker)."),
]


def _check_creator(session: Session, created_by: str | None) -> None:
    """Phase 1 let anyone write any name here; Phase 2 records who really acted."""
    if created_by and created_by != session.actor.handle:
        raise Forbidden(
            f"--created-by {created_by}: tasks are created by whoever is signed in (you are "
            f"{session.actor.handle}); to act as {created_by}, use its token (TASKFLOW_TOKEN)"
        )


def _print_created(task: TaskOut, json_: bool, what: str = "Created task") -> None:
    if json_:
        return
    where = f" under #{task.parent_id}" if task.parent_id else ""
    success(f"{what} [bold]#{task.id}[/] {escape(task.title)}{where} in {escape(task.project)}")


def add(
    title: Annotated[str, typer.Argument(help="What needs doing.")],
    description: Description = None,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project slug (default: yours).")
    ] = None,
    assign: Assign = None,
    priority: PriorityOpt = None,
    tags: TagsOpt = None,
    parent: Annotated[int | None, typer.Option("--parent", help="Parent task id.")] = None,
    due: Due = None,
    recurrence: RecurrenceOpt = None,
    needs: Needs = None,
    created_by: CreatedBy = None,
    json_: Json = False,
) -> None:
    """Add a task (optionally under a parent)."""

    async def work(s: Session) -> Any:
        _check_creator(s, created_by)
        cmd = build(
            CreateTask,
            title=title,
            description=description,
            project=project or (None if parent else s.config.default_project),
            assignee=assign,
            priority=priority,
            tags=split_tags(tags),
            parent_id=parent,
            due_date=due,
            recurrence=recurrence,
            required_capabilities=split_tags(needs),
        )
        return await tasks.create_task(s.db, s.actor, cmd)

    detail = call(work)
    if json_:
        emit_json(detail)
    _print_created(detail.task, json_)


def subtask(
    parent_id: Annotated[int, typer.Argument(help="The parent task's id.", min=1)],
    title: Annotated[str, typer.Argument(help="What needs doing.")],
    description: Description = None,
    assign: Assign = None,
    priority: PriorityOpt = None,
    tags: TagsOpt = None,
    due: Due = None,
    created_by: CreatedBy = None,
    json_: Json = False,
) -> None:
    """Add a subtask under PARENT_ID (in the parent's project)."""
    spec = build(
        SubtaskSpec,
        title=title,
        description=description,
        assignee=assign,
        priority=priority,
        tags=split_tags(tags),
        due_date=due,
    )

    async def work(s: Session) -> list[TaskOut]:
        _check_creator(s, created_by)
        return await tasks.add_subtasks(s.db, s.actor, parent_id, [spec])

    created = call(work)
    if json_:
        emit_json(created[0])
    _print_created(created[0], json_, "Created subtask")


async def fetch_subtree(s: Session, task_id: int, *, everything: bool, **page: Any) -> TaskDetail:
    """One page of a task's subtree, or with `everything` every page after it, joined."""
    detail = await task_queries.get_task(s.db, s.actor, task_id, **page)
    while everything and detail.next_cursor is not None:
        more = await task_queries.get_task(
            s.db, s.actor, task_id, **{**page, "cursor": detail.next_cursor}
        )
        detail = more.model_copy(update={"subtree": [*detail.subtree, *more.subtree]})
    return detail


def show(
    task_id: TaskId,
    tree: Annotated[bool, typer.Option("--tree", help="The subtree, rolled up.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Subtree nodes per page (default 100).")
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", help="Levels below the task (default all).")
    ] = None,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a page (its next_cursor).")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Read every page of the subtree, not just one.")
    ] = False,
    json_: Json = False,
) -> None:
    """Show a task (with --tree: a page of its subtree, rolled-up progress; --all: all of it)."""
    page = {"limit": limit, "depth": depth, "cursor": cursor}
    plain = not (json_ or tree)

    async def work(s: Session) -> tuple[TaskDetail, list[CommentOut]]:
        detail = await fetch_subtree(s, task_id, everything=everything, **page)
        notes = await run(s.db, s.actor, ListComments(task_id=task_id)) if plain else []
        return detail, notes

    detail, notes = call(work)
    if json_:
        emit_json(detail)
    elif tree:
        out().print(task_tree(detail))
        if detail.next_cursor is not None:
            same = "".join(f" --{k} {v}" for k, v in (("limit", limit), ("depth", depth)) if v)
            out().print(
                f"[dim]{len(detail.subtree)} nodes shown; the rest: taskflow show {task_id} "
                f"--tree{same} --cursor {detail.next_cursor} (or --all)[/]",
                soft_wrap=True,  # a cursor broken over two lines could not be pasted back
            )
    else:
        from taskflow.cli.commands.feed import comments_view  # only `show` needs it here

        out().print(task_panel(detail.task, len(detail.subtasks)))
        if notes:
            out().print(f"[bold]Comments ({len(notes)})[/]")
            for part in comments_view(notes):
                out().print(part)


def edit(
    task_id: TaskId,
    title: Annotated[str | None, typer.Option("--title", help="New title.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="New text.")] = None,
    status: Annotated[TaskStatus | None, typer.Option("--status", help="New status.")] = None,
    priority: PriorityOpt = None,
    assign: Annotated[
        str | None, typer.Option("--assign", help="New assignee, or 'none' to unassign.")
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="New parent id, or 'none' for top level.")
    ] = None,
    tags: TagsOpt = None,
    due: Annotated[str | None, typer.Option("--due", help="YYYY-MM-DD, or 'none'.")] = None,
    recurrence: Annotated[
        str | None, typer.Option("--recurrence", "-r", help="A rule as for add, or 'none'.")
    ] = None,
    needs: Annotated[
        str | None, typer.Option("--needs", help="Capabilities a claimer must have: a,b")
    ] = None,
    json_: Json = False,
) -> None:
    """Change a task's fields (status changes follow the workflow)."""
    fields: dict[str, Any] = {
        k: v
        for k, v in {
            "title": title,
            "description": description,
            "status": status,
            "priority": priority,
            "tags": split_tags(tags),
            "required_capabilities": split_tags(needs),
        }.items()
        if v is not None
    }
    for name, value in (
        ("assignee", assign),
        ("parent_id", parent),
        ("due_date", due),
        ("recurrence", recurrence),
    ):
        if value is not None:
            fields[name] = None if clears(value) else value
    if not fields:
        fail("nothing to change: give at least one option (see taskflow edit --help)", USAGE)
    cmd = build_exact(EditTask, fields)
    task = call(lambda s: tasks.edit_task(s.db, s.actor, task_id, cmd))
    if json_:
        emit_json(task)
    else:
        success(f"Updated task [bold]#{task.id}[/] {escape(task.title)}")


def delete(
    task_id: TaskId,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
    json_: Json = False,
) -> None:
    """Delete a task and its subtasks (their audit history stays)."""

    async def work(s: Session) -> list[int]:
        # One session for the question and the deletion: opening the runtime twice (server,
        # migration check, sign-in) doubled the command's start-up cost.
        if not force:
            detail = await task_queries.get_task(s.db, s.actor, task_id, limit=1)
            more = " and everything under it" if detail.subtasks else ""
            if not typer.confirm(f"Delete task #{task_id} {detail.task.title!r}{more}?"):
                fail("not deleted")
        return await tasks.delete_task(s.db, s.actor, task_id)

    deleted = call(work)
    if json_:
        emit_json({"deleted": deleted})
        return
    more = f" and {len(deleted) - 1} subtask(s)" if len(deleted) > 1 else ""
    success(f"Deleted task #{task_id}{more} (its audit history stays)")


def due(
    task_id: TaskId,
    date: Annotated[str | None, typer.Option("--date", help="New due date, YYYY-MM-DD.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the due date.")] = False,
    json_: Json = False,
) -> None:
    """Show, set (--date) or clear (--clear) a task's due date."""
    if date and clear:
        fail("give either --date or --clear, not both", USAGE)
    if not date and not clear:
        detail = call(lambda s: task_queries.get_task(s.db, s.actor, task_id))
        when = detail.task.due_date
        if json_:
            emit_json({"id": task_id, "due_date": when})
        else:
            out().print(f"Task #{task_id} is due {when:%Y-%m-%d}" if when else "No due date")
        return
    value = parse_date(date, "--date") if date else None
    task = call(lambda s: workflow.set_due_date(s.db, s.actor, task_id, value))
    if json_:
        emit_json(task)
    elif value:
        success(f"Task #{task_id} is due {value:%Y-%m-%d}")
    else:
        success(f"Task #{task_id} has no due date now")


def register(app: typer.Typer) -> None:
    app.command()(add)
    app.command()(subtask)
    app.command()(show)
    app.command()(edit)
    app.command()(delete)
    app.command()(due)

"""Phase 1's listing commands: list, search, upcoming, overdue.

Each is one plain read (`list_tasks`, page after page), so this module imports nothing but the
listing itself: `taskflow list` loads no ORM (issue 12), and its time is the libraries' imports
and one statement per page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from taskflow.cli.output import emit_json, out
from taskflow.cli.params import Json, PriorityOpt, ProjectOpt, StatusOpt, build
from taskflow.cli.render import task_table
from taskflow.cli.session import Session, call
from taskflow.core.schemas import TaskFilter, TaskOut
from taskflow.core.services import task_queries


async def fetch_all(
    s: Session, f: TaskFilter, limit: int | None, *, mine: bool = False
) -> list[TaskOut]:
    """Every page of a listing (Phase 1 listed everything), up to `limit` tasks."""
    found: list[TaskOut] = []
    while True:
        page = await task_queries.list_tasks(s.db, s.actor, f, mine=mine)
        found.extend(page.items)
        if page.next_cursor is None or (limit is not None and len(found) >= limit):
            return found[:limit] if limit is not None else found
        f = f.model_copy(update={"cursor": page.next_cursor})


def _show_list(
    filter_: TaskFilter, limit: int | None, json_: bool, title: str, *, mine: bool = False
) -> None:
    found = call(lambda s: fetch_all(s, filter_, limit, mine=mine))
    if json_:
        emit_json(found)
    elif not found:
        out().print("[dim]No tasks match.[/]")
    else:
        out().print(task_table(found, f"{title} ({len(found)})"))


def list_tasks(
    project: ProjectOpt = None,
    status: StatusOpt = None,
    assign: Annotated[str | None, typer.Option("--assign", "-a", help="Assigned to @w.")] = None,
    parent: Annotated[int | None, typer.Option("--parent", help="Children of this task.")] = None,
    search: Annotated[str | None, typer.Option("--search", help="Text in title/desc.")] = None,
    priority: PriorityOpt = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Has tag (repeatable).")] = None,
    created_by: Annotated[str | None, typer.Option("--created-by", help="Created by @w.")] = None,
    due_before: Annotated[str | None, typer.Option("--due-before", help="YYYY-MM-DD")] = None,
    due_after: Annotated[str | None, typer.Option("--due-after", help="YYYY-MM-DD")] = None,
    no_assignee: Annotated[bool, typer.Option("--no-assignee", help="Unassigned only.")] = False,
    ready: Annotated[bool, typer.Option("--ready", help="Open, no open blocker.")] = False,
    blocked: Annotated[bool, typer.Option("--blocked", help="With an open blocker.")] = False,
    needs: Annotated[
        list[str] | None, typer.Option("--needs", help="Needs capability (repeatable).")
    ] = None,
    has_due_date: Annotated[
        bool | None,
        typer.Option("--has-due-date/--no-due-date", help="Only tasks with / without a due date."),
    ] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="created|updated|priority|due_date|title")
    ] = "created",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N tasks.", min=1)] = None,
    mine: Annotated[
        bool, typer.Option("--mine", help="Your work: assigned to you or awaiting your review.")
    ] = False,
    json_: Json = False,
) -> None:
    """List tasks with Phase 1's filters and sorts."""
    f = build(
        TaskFilter,
        project=project,
        status=status,
        assignee=assign,
        parent_id=parent,
        search=search,
        priority=priority,
        tags=tag or None,
        created_by=created_by,
        due_before=due_before,
        due_after=due_after,
        no_assignee=no_assignee or None,
        ready=ready or None,
        blocked=blocked or None,
        required_capabilities=needs or None,
        has_due_date=has_due_date,
        sort=sort,
        reverse=reverse or None,
        limit=min(limit or 500, 500),
    )
    _show_list(f, limit, json_, "Your work" if mine else "Tasks", mine=mine)


def search(
    keyword: Annotated[str, typer.Argument(help="Text to find in titles and descriptions.")],
    project: ProjectOpt = None,
    status: StatusOpt = None,
    json_: Json = False,
) -> None:
    """Find tasks whose title or description contains KEYWORD."""
    f = build(TaskFilter, search=keyword, project=project, status=status, limit=500)
    _show_list(f, None, json_, f"Tasks matching {keyword!r}")


def upcoming(
    days: Annotated[int, typer.Option("--days", help="How many days ahead.", min=1)] = 7,
    project: ProjectOpt = None,
    json_: Json = False,
) -> None:
    """Open tasks due in the next DAYS days."""
    now = datetime.now(UTC)
    f = build(
        TaskFilter,
        project=project,
        due_after=now,
        due_before=now + timedelta(days=days),
        open_only=True,
        sort="due_date",
        limit=500,
    )
    _show_list(f, None, json_, f"Due in the next {days} days")


def overdue(project: ProjectOpt = None, json_: Json = False) -> None:
    """Open tasks whose due date has passed."""
    f = build(
        TaskFilter,
        project=project,
        due_before=datetime.now(UTC),
        open_only=True,
        sort="due_date",
        limit=500,
    )
    _show_list(f, None, json_, "Overdue")


def register(app: typer.Typer) -> None:
    app.command("list")(list_tasks)
    app.command()(search)
    app.command()(upcoming)
    app.command()(overdue)

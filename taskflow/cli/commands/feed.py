"""Comments and the feed: `comment`, `edit-comment`, `comments`, `changes`, `watch`.

`watch` reads the log straight through the core, as every CLI command does: the core's feed
hub LISTENs on its own connection (or polls the log behind a pooler) and the command renders
each event with Rich as it arrives. It resumes by itself: a dropped database connection costs
a retry, never an event, because the stream restarts from the last entry it printed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import orjson
import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.text import Text

from taskflow.cli.output import emit_json, err, out, success
from taskflow.cli.params import Json, TaskId, build
from taskflow.cli.render import audit_table
from taskflow.cli.session import Session, call
from taskflow.core import feed
from taskflow.core.dispatcher import run
from taskflow.core.errors import Unavailable
from taskflow.core.handlers.comments import AddComment, CommentOut, EditComment, ListComments
from taskflow.core.handlers.feed import ListChanges, scope_for

ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")]
TaskOpt = Annotated[int | None, typer.Option("--task", help="This task and its subtree.")]
MineOpt = Annotated[bool, typer.Option("--mine", help="Mentions of you and your tasks.")]
RETRY_SECONDS = 1.0


def comment(task_id: TaskId, body: str, json_: Json = False) -> None:
    """Comment on a task (Markdown; @handles of members are mentioned)."""
    said = call(lambda s: run(s.db, s.actor, build(AddComment, task_id=task_id, body=body)))
    if json_:
        emit_json(said)
        return
    named = f" (mentions {', '.join(said.mentions)})" if said.mentions else ""
    success(f"Comment {said.id} on task {task_id}{named}")


def edit_comment(comment_id: int, body: str, json_: Json = False) -> None:
    """Edit your comment: a new revision (the old text stays)."""
    said = call(lambda s: run(s.db, s.actor, build(EditComment, comment_id=comment_id, body=body)))
    if json_:
        emit_json(said)
        return
    success(f"Comment {said.id} is at revision {said.revision}")


def comments_view(items: list[CommentOut]) -> list[object]:
    """Each comment as a header line and its Markdown (used by `show` too)."""
    parts: list[object] = []
    for c in items:
        edited = f", revision {c.revision}" if c.revision > 1 else ""
        parts.append(
            Text.from_markup(
                f"[bold cyan]{escape(c.author)}[/] [dim]#{c.id} "
                f"{c.created_at:%Y-%m-%d %H:%M}{edited}[/]"
            )
        )
        parts.append(Markdown(c.body))
    return parts


def comments(
    task_id: TaskId,
    history: Annotated[bool, typer.Option("--history", help="Every revision.")] = False,
    json_: Json = False,
) -> None:
    """A task's comments, oldest first."""
    items = call(lambda s: run(s.db, s.actor, ListComments(task_id=task_id, history=history)))
    if json_:
        emit_json(items)
    elif not items:
        out().print(f"[dim]No comments on task {task_id}.[/]")
    else:
        for part in comments_view(items):
            out().print(part)


def changes(
    after: Annotated[
        int | None, typer.Option("--after", help="Entries after this id (next_after).")
    ] = None,
    project: ProjectOpt = None,
    task: TaskOpt = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only by @w.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="e.g. commented.")] = None,
    mine: MineOpt = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 100,
    json_: Json = False,
) -> None:
    """What changed since --after (omit it: the latest), in feed order."""
    cmd = build(
        ListChanges,
        after=after,
        project=project,
        task_id=task,
        actor=actor,
        action=action,
        mine=mine,
        limit=limit,
    )
    page = call(lambda s: run(s.db, s.actor, cmd))
    if json_:
        emit_json(page)
        return
    if page.items:
        out().print(audit_table(page.items, f"Changes ({len(page.items)})"))
    else:
        out().print("[dim]Nothing new.[/]")
    more = " (more waiting)" if page.more else ""
    out().print(f"[dim]next: taskflow changes --after {page.next_after}{more}[/]")


def _line(e: feed.Event) -> Text:
    style = "magenta" if e.actor_type == "agent" else "cyan"
    line = Text(f"{e.created_at:%H:%M:%S} ", style="dim")
    line.append(e.actor, style=style)
    line.append(f" {e.action} ", style="bold")
    line.append(f"{e.entity_type} {e.entity_id}")
    if e.task_id is not None and e.entity_type != "task":
        line.append(f" on task {e.task_id}")
    body = e.details.get("body") or e.details.get("note") or e.details.get("reason")
    if isinstance(body, str):
        line.append(f": {body.splitlines()[0][:80] if body else ''}", style="dim")
    line.append(f"  #{e.id}", style="dim")
    return line


def _ready(hub: feed.Hub) -> None:
    how = "listening" if hub.mode == "listen" else "polling the log"
    err().print(f"[dim]Watching ({how}); Ctrl-C stops.[/]")  # stderr: --json stays clean


async def _watch(
    s: Session, project: str | None, task: int | None, mine: bool, json_: bool
) -> None:
    hub = s.runtime.hub()
    last: feed.Position | None = None
    while True:
        try:
            async with feed.connection(s.db) as raw:
                scope = await scope_for(
                    raw, s.actor, build(ListChanges, project=project, task_id=task, mine=mine)
                )
            async for event in feed.follow(hub, s.db, scope, last, on_ready=_ready):
                last = event.position
                if json_:  # JSON Lines: one entry per line, as it comes
                    typer.echo(orjson.dumps(event.as_json()).decode())
                else:
                    out().print(_line(event))
                sys.stdout.flush()
        except Unavailable as exc:
            err().print(f"[yellow]{escape(exc.message)}: retrying[/]")
            await hub.close()  # started again by the next follow, from `last`
            await asyncio.sleep(RETRY_SECONDS)


def watch(
    project: ProjectOpt = None,
    task: TaskOpt = None,
    mine: MineOpt = False,
    json_: Json = False,
) -> None:
    """Follow changes live (Rich; --json: one entry per line); survives a dropped connection."""
    call(lambda s: _watch(s, project, task, mine, json_))


def register(app: typer.Typer) -> None:
    app.command()(comment)
    app.command("edit-comment")(edit_comment)
    app.command()(comments)
    app.command()(changes)
    app.command()(watch)

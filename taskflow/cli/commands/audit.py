"""`taskflow audit ...`: read the trail (Phase 1's four commands), verify it, digest it."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow.cli.output import emit_json, err, fail, out, success
from taskflow.cli.params import Json, build
from taskflow.cli.render import audit_panel, audit_table
from taskflow.cli.session import Session, call
from taskflow.core import audit
from taskflow.core.schemas import AuditEntryOut, AuditFilter, VerifyOut
from taskflow.core.services import history

audit_app = typer.Typer(help="The audit trail: list, show, verify, digest.", no_args_is_help=True)

Limit = Annotated[int, typer.Option("--limit", "-n", help="At most N entries.", min=1)]


async def fetch(s: Session, f: AuditFilter, limit: int) -> list[AuditEntryOut]:
    """Newest first, following cursors until `limit` entries."""
    found: list[AuditEntryOut] = []
    while len(found) < limit:
        page = await history.list_audit(s.db, s.actor, f)
        found.extend(page.items)
        if page.next_cursor is None:
            break
        f = f.model_copy(update={"cursor": page.next_cursor})
    return found[:limit]


def _show(f: AuditFilter, limit: int, json_: bool, title: str, oldest_first: bool = False) -> None:
    entries = call(lambda s: fetch(s, f, limit))
    if oldest_first:
        entries.reverse()
    if json_:
        emit_json(entries)
    elif not entries:
        out().print("[dim]No audit entries match.[/]")
    else:
        out().print(audit_table(entries, f"{title} ({len(entries)})"))


@audit_app.command("list")
def list_(
    task: Annotated[int | None, typer.Option("--task", help="Entries of this task.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Entries by @w.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="e.g. rejected.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    limit: Limit = 20,
    json_: Json = False,
) -> None:
    """The newest audit entries, filtered."""
    f = build(
        AuditFilter,
        task_id=task,
        actor=actor,
        action=action,
        project=project,
        limit=min(limit, 500),
    )
    _show(f, limit, json_, "Audit trail")


@audit_app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(help="Audit entry id.", min=1)], json_: Json = False
) -> None:
    """One entry, with all its details."""
    entry = call(lambda s: history.get_entry(s.db, s.actor, entry_id))
    if json_:
        emit_json(entry)
    else:
        out().print(audit_panel(entry))


@audit_app.command("task")
def task_history(
    task_id: Annotated[int, typer.Argument(help="Task id.", min=1)],
    limit: Limit = 500,
    json_: Json = False,
) -> None:
    """A task's whole history, oldest first."""
    f = build(AuditFilter, task_id=task_id, limit=min(limit, 500))
    _show(f, limit, json_, f"History of task {task_id}", oldest_first=True)


@audit_app.command("actor")
def actor_history(
    handle: Annotated[str, typer.Argument(help="Worker handle.")],
    limit: Limit = 20,
    json_: Json = False,
) -> None:
    """What a worker did, newest first."""
    f = build(AuditFilter, actor=handle, limit=min(limit, 500))
    _show(f, limit, json_, f"Done by {handle}")


@audit_app.command("verify")
def verify(
    digest: Annotated[
        str | None,
        typer.Option("--digest", help="A digest saved earlier: check the log still matches it."),
    ] = None,
    json_: Json = False,
) -> None:
    """Recompute every hash chain; name the first entry changed, removed or inserted by hand."""

    async def work(s: Session) -> tuple[VerifyOut, bool | None]:
        result = await history.verify_log(s.db, s.actor)
        matches = await audit.check_digest(s.db, digest) if digest else None
        return result, matches

    result, matches = call(work)
    if json_:
        emit_json({**result.model_dump(mode="json"), "digest_matches": matches})
    else:
        _report(result, matches)
    if not result.ok or matches is False:
        raise typer.Exit(1)


def _report(result: VerifyOut, matches: bool | None) -> None:
    if result.ok:
        success(
            f"Audit log intact: {result.entries_checked} entries in "
            f"{result.chains_checked} chains verified"
        )
        out().print(f"  digest: [bold]{result.digest}[/]")
    else:
        for problem in result.problems:
            entry = problem.get("entry_id")
            where = f"entry {entry}" if entry else "chain"
            err().print(f"[red]✗[/] {where} ({problem['entity']}): {problem['reason']}")
    if matches is True:
        success("The saved digest matches: nothing up to it was changed")
    elif matches is False:
        err().print("[bold red]Error:[/] the saved digest does NOT match: history was rewritten")
    if not result.ok:
        fail(f"audit log broken: {len(result.problems)} problem(s), first shown above")


@audit_app.command("digest")
def digest_(json_: Json = False) -> None:
    """One value over every chain head: save it elsewhere, check it later with verify --digest."""
    value = call(lambda s: audit.digest(s.db))
    if json_:
        emit_json({"digest": value})
    else:
        typer.echo(value)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")

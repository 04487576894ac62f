"""`taskflow webhook ...`: a project's webhooks and their delivery log (project admins)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from taskflow.cli.output import answer, emit_json, fail, out, show
from taskflow.cli.params import Json, build
from taskflow.cli.render import when
from taskflow.cli.session import Session, call
from taskflow.core.dispatcher import run
from taskflow.core.domain import DeliveryStatus
from taskflow.core.handlers import webhooks as ops

webhook_app = typer.Typer(
    help="Webhooks: signed POSTs of a project's events (admins).", no_args_is_help=True
)

HookId = Annotated[int, typer.Argument(help="Webhook id, from `taskflow webhook list`.", min=1)]
Project = Annotated[
    str | None, typer.Option("--project", "-p", help="Project slug (default: yours).")
]
Events = Annotated[
    list[str] | None,
    typer.Option(
        "--event", "-e", help="An audit action to send (repeat; default: * = every event)."
    ),
]


def _run(project: str | None, command: type, **fields: Any) -> Any:
    """Build the command for `project` (or the configured default) and run it."""

    async def work(s: Session) -> Any:
        cmd = build(command, project=project or s.config.default_project, **fields)
        return await run(s.db, s.actor, cmd)

    return call(work)


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def hook_table(hooks: Iterable[ops.WebhookOut]) -> Table:
    table = _table("Webhooks")
    for name in ("ID", "URL", "Events", "State", "Failures", "Description"):
        table.add_column(name)
    for h in hooks:
        state = (
            Text("enabled", style="green")
            if h.enabled
            else Text(f"disabled: {h.disabled_reason or ''}", style="red")
        )
        table.add_row(
            str(h.id), Text(h.url), ", ".join(h.events), state, str(h.failures), Text(h.description)
        )
    return table


def delivery_table(deliveries: Iterable[ops.DeliveryOut], hook: int) -> Table:
    table = _table(f"Deliveries of webhook {hook}")
    for name in ("ID", "Event", "Entry", "Status", "Attempts", "Last answer", "Next try"):
        table.add_column(name)
    style = {"delivered": "green", "failed": "red", "pending": "yellow"}
    for d in deliveries:
        last = d.attempts[-1] if d.attempts else None
        said = "-" if last is None else str(last.status_code or last.error or "")
        table.add_row(
            d.id,
            d.event,
            str(d.entry_id),
            Text(d.status.value, style=style[d.status.value]),
            str(len(d.attempts)),
            Text(said[:60]),
            when(d.next_attempt_at, seconds=True) or "-",
        )
    return table


@webhook_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL to POST events to.")],
    project: Project = None,
    event: Events = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    json_: Json = False,
) -> None:
    """Add a webhook; its signing secret is shown once."""
    issued: ops.IssuedWebhook = _run(
        project, ops.CreateWebhook, url=url, events=event or None, description=description
    )
    _show_secret(issued, json_)


def _show_secret(issued: ops.IssuedWebhook, json_: bool) -> None:
    """A newly issued signing secret, with what to do with it (it is never shown again)."""
    if json_:
        emit_json(issued)
        return
    hook = issued.webhook
    out().print(
        Panel(
            f"[bold]{issued.secret}[/]\n\n"
            f"Deliveries to {escape(hook.url)} ({', '.join(hook.events)}) carry webhook-id, "
            "webhook-timestamp and webhook-signature (Standard Webhooks): verify them with it.\n"
            "[yellow]This is the only time it is shown: store it now.[/]",
            title=f"Webhook {hook.id} of {hook.project}: signing secret",
            title_align="left",
        )
    )


@webhook_app.command("list")
def list_(project: Project = None, json_: Json = False) -> None:
    """A project's webhooks (never their secrets)."""
    hooks = _run(project, ops.ListWebhooks)
    show(hooks, json_, hook_table(hooks))


@webhook_app.command("edit")
def edit(
    webhook_id: HookId,
    project: Project = None,
    url: Annotated[str | None, typer.Option("--url")] = None,
    event: Events = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Resume or pause it.")
    ] = None,
    json_: Json = False,
) -> None:
    """Change a webhook's URL, events or description, or pause/resume it."""
    if url is None and not event and description is None and enable is None:
        fail("nothing to change: give --url, --event, --description, --enable or --disable", 2)
    hook = _run(
        project,
        ops.UpdateWebhook,
        webhook_id=webhook_id,
        url=url,
        events=event or None,
        description=description,
        enabled=enable,
    )
    state = "enabled" if hook.enabled else "disabled"
    answer(hook, json_, f"Webhook {hook.id} of {escape(hook.project)}: {state}")


@webhook_app.command("rotate-secret")
def rotate_secret(
    webhook_id: HookId,
    project: Project = None,
    overlap: Annotated[
        int,
        typer.Option(
            "--overlap",
            help="Seconds the old secret keeps signing beside the new one (0: stop now).",
            min=0,
        ),
    ] = ops.DAY,
    json_: Json = False,
) -> None:
    """Give a webhook a new signing secret, shown once; the old one signs beside it a while."""
    issued = _run(project, ops.RotateWebhookSecret, webhook_id=webhook_id, overlap_seconds=overlap)
    _show_secret(issued, json_)
    until = issued.webhook.previous_secret_expires_at
    if not json_:
        out().print(
            f"The old secret signs too until {when(until, seconds=True)}."
            if until
            else "The old secret signs nothing more."
        )


@webhook_app.command("delete")
def delete(webhook_id: HookId, project: Project = None, json_: Json = False) -> None:
    """Delete a webhook and its delivery log."""
    _run(project, ops.DeleteWebhook, webhook_id=webhook_id)
    answer({"deleted": webhook_id}, json_, f"Deleted webhook {webhook_id}")


@webhook_app.command("deliveries")
def deliveries(
    webhook_id: HookId,
    project: Project = None,
    status: Annotated[DeliveryStatus | None, typer.Option("--status", "-s")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 50,
    json_: Json = False,
) -> None:
    """A webhook's delivery log, newest first, with every attempt."""
    found = _run(
        project, ops.ListWebhookDeliveries, webhook_id=webhook_id, status=status, limit=limit
    )
    show(found, json_, delivery_table(found, webhook_id))


@webhook_app.command("redeliver")
def redeliver(
    webhook_id: HookId,
    delivery_id: Annotated[
        str, typer.Argument(help="The delivery's id (msg_...), from `taskflow webhook deliveries`.")
    ],
    project: Project = None,
    json_: Json = False,
) -> None:
    """Send a failed or delivered delivery again, with a fresh round of attempts."""
    found = _run(
        project, ops.RedeliverWebhookDelivery, webhook_id=webhook_id, delivery_id=delivery_id
    )
    answer(found, json_, f"Delivery {found.id} ({escape(found.event)}) will be sent again")


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")

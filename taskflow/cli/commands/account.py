"""Who you are: `init` (local mode, as in Phase 1), `login`, `logout`, `whoami`, `status`."""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from taskflow.cli.local_state import LocalConfig, clear_token, save_config, save_token
from taskflow.cli.output import USAGE, emit_json, fail, note, out, success
from taskflow.cli.session import Session, call, load_settings, token_source
from taskflow.core.actor import Actor
from taskflow.core.db import current_revision, head_revision
from taskflow.core.domain import TaskStatus, Via, check_handle
from taskflow.core.errors import ValidationFailed
from taskflow.core.schemas import MeOut
from taskflow.core.services import onboarding, summary, workers


def _default_handle() -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", getpass.getuser().lower()).strip("-") or "me"
    return "@" + name


def init(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Your handle (default: @<login name>).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Your display name.")] = None,
    path: Annotated[
        Path | None,
        typer.Option("--path", "-p", help="Data directory (default: TASKFLOW_DATA_DIR)."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set up local mode: your human worker, the `default` project, and your config."""
    settings = load_settings(**({"taskflow_data_dir": path} if path else {}))
    if settings.jwks_url:
        fail(
            "an auth server is configured (AUTH_SERVER_URL): sign in with `taskflow login`; "
            "your worker is created at your first sign-in"
        )
    handle = user or _default_handle()
    display = name or handle[1:]

    async def work(s: Session) -> onboarding.LocalSetup:
        return await onboarding.init_local(s.db, handle, display, via=Via.CLI)

    try:
        check_handle(handle)
    except ValidationFailed as exc:
        fail(f"--user: {exc}", USAGE)
    setup = call(work, auth=False, settings=settings)
    config_path = save_config(
        settings.data_dir, LocalConfig(current_user=handle, default_project=setup.project)
    )
    if json_:
        emit_json({**setup.model_dump(mode="json"), "config": str(config_path)})
        return
    verb = "Created" if setup.user_created else "Using existing"
    success(f"{verb} human worker [bold]{handle}[/] ({escape(setup.user.name)})")
    if setup.project_created:
        success(f"Created project [bold]{setup.project}[/] (you own it)")
    elif setup.role is None:
        note(f"Project {setup.project} exists but you are not a member: ask its owner")
    success(f"You are {handle} from now on (config: {escape(str(config_path))})")
    if path:
        note(f"Later commands need TASKFLOW_DATA_DIR={path} to find this data directory")
    if (Path.cwd() / ".taskflow" / "data.json").is_file():
        note("A Phase 1 store is here: bring it over with `taskflow import .taskflow/`")


def login(
    token: Annotated[
        str | None,
        typer.Option("--token", help="Token to save (default: read from stdin or a prompt)."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Save a bearer token (a Better Auth JWT or an agent API key) for later commands."""
    if token is None:
        token = sys.stdin.readline() if not sys.stdin.isatty() else getpass.getpass("Token: ")
    token = token.strip()
    if not token:
        fail("no token given: pass --token, pipe it on stdin, or paste it at the prompt", USAGE)

    async def work(s: Session) -> tuple[Actor, MeOut]:
        actor = await s.runtime.auth.authenticate(token, Via.CLI)
        return actor, await workers.whoami(s.db, actor)

    settings = load_settings()
    actor, worker = call(work, auth=False, settings=settings)
    path = save_token(settings.data_dir, token)
    if json_:
        emit_json({"worker": worker, "auth": actor.auth, "token_file": str(path)})
        return
    success(f"Signed in as [bold]{worker.handle}[/] ({worker.type}, {actor.auth})")
    note(f"Token saved to {path} (readable by you only)")


def logout() -> None:
    """Forget the saved token."""
    settings = load_settings()
    if clear_token(settings.data_dir):
        success("Signed out: the saved token is deleted")
    else:
        note("You were not signed in (no saved token)")
    if settings.taskflow_token:
        note("TASKFLOW_TOKEN is still set in your environment and still signs you in")


def whoami(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Who the CLI acts as, and how that was decided."""

    async def work(s: Session) -> tuple[MeOut, str]:
        _, source = token_source(s.settings)
        how = f"{s.actor.auth} ({source})" if s.actor.auth != "local" else "local user (init)"
        return await workers.whoami(s.db, s.actor), how

    worker, how = call(work)
    if json_:
        emit_json({"worker": worker, "via": how})
        return
    out().print(f"[bold]{worker.handle}[/] {escape(worker.name)} ({worker.type}) — {how}")
    if worker.email:
        out().print(f"Email: {escape(worker.email)}")
    if worker.sso_subject:
        out().print(f"SSO subject: {escape(worker.sso_subject)}")


def _database_label(s: Session) -> str:
    if s.settings.database_url:
        url = s.runtime.db.engine.url
        return f"PostgreSQL at {url.host}:{url.port or 5432}/{url.database}"
    return f"embedded PostgreSQL in {s.settings.data_dir}"


def status(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Where your data is, who you are, and how much work is where."""

    async def work(s: Session) -> dict[str, Any]:
        counts = await summary.status_summary(s.db, s.actor)
        revision = await current_revision(s.db)
        return {
            "summary": counts,
            "database": _database_label(s),
            "schema": {"current": revision, "head": head_revision()},
            "mode": "local" if s.runtime.local_mode else "auth server",
            "data_dir": str(s.settings.data_dir),
        }

    info = call(work)
    if json_:
        emit_json(info)
        return
    counts: summary.StatusSummary = info["summary"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("User", counts.user)
    grid.add_row("Mode", info["mode"])
    grid.add_row("Database", escape(info["database"]))
    grid.add_row("Schema", f"{info['schema']['current']} (head {info['schema']['head']})")
    grid.add_row("Projects", str(counts.projects))
    grid.add_row("Tasks", str(counts.tasks))
    for state in TaskStatus:
        grid.add_row(f"  {state}", str(counts.by_status[state]))
    grid.add_row("Overdue", f"[red]{counts.overdue}[/]" if counts.overdue else "0")
    grid.add_row("Yours, open", str(counts.mine_open))
    if counts.to_review:
        grid.add_row("Awaiting your review", str(counts.to_review))
    grid.add_row("Mentioning you, open", str(counts.mentioned_open))
    out().print(grid)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.command()(status)

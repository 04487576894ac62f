"""Running TaskFlow: `db upgrade|status`, `serve` (REST + MCP over HTTP), `mcp` (stdio), and
`import` (take over a Phase 1 store).

The servers live in other packages the CLI must not import (surfaces stay independent), so
`serve` hands uvicorn an import string and `mcp` replaces this process with the stdio server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from taskflow.cli.local_state import LocalConfig, load_config, save_config
from taskflow.cli.output import USAGE, emit_json, err, fail, note, out, success
from taskflow.cli.session import Session, call, load_settings, token_source
from taskflow.core import embedded, phase1
from taskflow.core.config import Settings
from taskflow.core.db import Database, current_revision, head_revision, role_report, upgrade
from taskflow.core.domain import Via, check_handle
from taskflow.core.errors import TaskFlowError
from taskflow.core.services import importer
from taskflow.core.services.onboarding import LocalSetup

db_app = typer.Typer(help="The database: status, upgrade, stop.", no_args_is_help=True)

SERVER_FACTORY = "taskflow.server:factory"
HTTP_PROTOCOL = "taskflow.deadline:ReceiptDeadline"
"""uvicorn's httptools protocol with a deadline for receiving each request."""
MCP_STDIO = "from taskflow.mcp_server.stdio import main; main()"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROGRESS_THRESHOLD = 300
"""Stores with more records than this get a progress bar while importing."""


def _where(s: Session) -> str:
    if s.settings.database_url:
        return s.runtime.db.engine.url.render_as_string(hide_password=True)
    return f"embedded ({s.settings.data_dir / 'pgdata'})"


@db_app.command("status")
def db_status(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Which database, and whether its schema is up to date."""

    async def work(s: Session) -> dict[str, Any]:
        head = head_revision()
        try:
            current = await current_revision(s.db)
            report = await role_report(s.db)
        except Exception:
            if s.db.owner_url is None:
                raise
            # The app's role cannot log in yet (an embedded database from before it existed):
            # the owner reads the revision; the next command migrates and sets the role up.
            owner = Database.from_url(s.db.owner_url, pool_size=1)
            try:
                current = await current_revision(owner)
            finally:
                await owner.close()
            report = None
        return {
            "database": _where(s),
            "current": current,
            "head": head,
            "up_to_date": current == head,
            "role": None if report is None else report.role,
            "role_could_alter_audit_log": None if report is None else report.could_alter_audit_log,
        }

    info = call(work, auth=False, migrate=False)
    if json_:
        emit_json(info)
        return
    out().print(f"Database: {info['database']}")
    out().print(f"Schema:   {info['current'] or 'empty'} (latest {info['head']})")
    if info["role"] is None:
        out().print("Role:     not set up yet (the next command migrates and sets it up)")
    else:
        out().print(f"Role:     {info['role']}")
        if info["role_could_alter_audit_log"]:
            note(
                f"The app's role {info['role']} could alter the audit log (disable its trigger, "
                "rewrite or delete history): connect as a role without those rights "
                "(DATABASE_URL) and migrate as the owner (DATABASE_MIGRATION_URL); see "
                "docs/deploy.md"
            )
    if info["up_to_date"]:
        success("Up to date")
    else:
        note("Behind: run `taskflow db upgrade` (any command also upgrades it)")


@db_app.command("upgrade")
def db_upgrade(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Bring the schema to the latest version (safe to run any time)."""

    async def work(s: Session) -> dict[str, Any]:
        before = await current_revision(s.db)
        await upgrade(s.db)
        return {"database": _where(s), "before": before, "after": await current_revision(s.db)}

    info = call(work, auth=False, migrate=False)
    if json_:
        emit_json(info)
    elif info["before"] == info["after"]:
        success(f"Already at the latest schema ({info['after']})")
    else:
        success(f"Upgraded the schema from {info['before'] or 'empty'} to {info['after']}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL (commands leave it running so the next one starts fast)."""
    settings = load_settings()
    if settings.database_url:
        note("DATABASE_URL is set: TaskFlow does not run that server, so there is nothing to stop")
        return
    outcome, users = embedded.stop(settings.data_dir)
    where = embedded.pgdata(settings.data_dir)
    if outcome is embedded.StopOutcome.STOPPED:
        success(f"Stopped the embedded PostgreSQL in {where}")
    elif outcome is embedded.StopOutcome.IN_USE:
        pids = ", ".join(str(p) for p in users)
        note(f"Not stopped: still used by process {pids} (a running `taskflow serve`?); stop it")
    elif outcome is embedded.StopOutcome.NOT_RUNNING:
        note(f"The embedded PostgreSQL in {where} is not running")
    else:
        note(f"No embedded database in {settings.data_dir}")


def _exit_cleanly_on_signals() -> None:
    """Let SIGTERM, SIGINT and SIGHUP end `serve` as a normal exit, so atexit runs and pgserver
    releases this process's handle on the embedded database (stopping it if no one else uses
    it). uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    handlers it found in place: these, instead of the default ones that kill the process."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    if hasattr(signal, "SIGHUP"):  # a closed terminal: shut down as uvicorn does for SIGTERM
        signal.signal(signal.SIGHUP, lambda signum, frame: signal.raise_signal(signal.SIGTERM))


async def _reachable(s: Session) -> None:
    """Nothing: opening the session already connected and checked the pooling."""


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8000,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Local mode: act as your init user, on 127.0.0.1 only."),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", help="Server processes (uvicorn workers; the app is stateless).", min=1
        ),
    ] = 1,
) -> None:
    """Serve the REST API and MCP over HTTP on one port."""
    settings = load_settings()
    if not settings.jwks_url and not no_auth:
        fail(
            "no auth server configured (AUTH_SERVER_URL): set it to serve signed-in users, or "
            "pass --no-auth to serve only this machine as your local user"
        )
    if no_auth:
        if host not in LOOPBACK:
            fail(f"--no-auth serves 127.0.0.1 only; drop --host {host}", USAGE)
        host = "127.0.0.1"
        user = load_config(settings.data_dir).current_user
        if not user:
            fail("--no-auth acts as your local user: run `taskflow init --user @you` first")
        os.environ["TASKFLOW_LOCAL_USER"] = user
        note(f"Local mode: every request acts as {user}; listening on 127.0.0.1 only")
    if settings.database_url:  # a wrong URL or an undeclared pooler: one line, not a traceback
        call(_reachable, auth=False, migrate=False, settings=settings)
    import uvicorn  # imported here: every other command starts faster without it

    _exit_cleanly_on_signals()
    uvicorn.run(
        SERVER_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=settings.taskflow_access_log,
        http=HTTP_PROTOCOL,
    )


def mcp(
    as_: Annotated[
        str | None,
        typer.Option("--as", help="Local mode: act as this user (default: your init user)."),
    ] = None,
) -> None:
    """Run the MCP server on stdin/stdout (for Claude Code, Claude Desktop, ...).

    It acts as the agent whose key is in TASKFLOW_API_KEY or, in local mode, as your local user.
    """
    settings = load_settings()
    argv = [sys.executable, "-c", MCP_STDIO]
    user = as_ or load_config(settings.data_dir).current_user
    if not settings.taskflow_api_key and not settings.jwks_url and user:
        argv += ["--as", user]
    sys.stdout.flush()
    if os.name == "nt":  # no exec on Windows: run it and pass its exit code on
        raise typer.Exit(subprocess.call(argv))
    os.execv(sys.executable, argv)


def import_(
    path: Annotated[Path, typer.Argument(help="A Phase 1 `.taskflow/` directory or data.json.")],
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            help="On a fresh install: your handle (default: the store's current user).",
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import a Phase 1 store: projects, workers, tasks and their full audit history.

    On a fresh install (no `taskflow init` yet) the store's current user becomes your local
    user first, as `taskflow init` would make them.
    """
    settings = load_settings()
    if user is not None:
        try:
            check_handle(user)
        except TaskFlowError as exc:
            fail(f"--user: {exc}", USAGE)
    adopting = _adopting(settings, user)
    try:
        source = phase1.load(path)
    except TaskFlowError as exc:
        fail(str(exc))
    total = source.store.record_count
    show_bar = total > PROGRESS_THRESHOLD and not json_

    async def run(s: Session, progress: importer.Progress | None) -> importer.ImportReport:
        if adopting:
            return await importer.import_as_local_user(s.db, source, user, progress, via=Via.CLI)
        return await importer.import_phase1(s.db, s.actor, source, progress)

    async def work(s: Session) -> importer.ImportReport:
        if not show_bar:
            return await run(s, None)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("Importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err(), transient=True) as bar:
            job = bar.add_task("import", total=total)
            return await run(s, lambda n: bar.advance(job, n))

    report = call(work, auth=not adopting, settings=settings)
    if report.local_user is not None:
        _remember(settings, report.local_user, chosen=user is not None, quiet=json_)
    if json_:
        emit_json(report)
    else:
        _report(report, total)


def _adopting(settings: Settings, user: str | None) -> bool:
    """Whether this import sets up the local user: local mode, no token, no `init` yet.

    Otherwise `--user` would silently mean someone other than who acts, so it is refused
    (naming the local user you already are is fine).
    """
    token, _ = token_source(settings)
    current = load_config(settings.data_dir).current_user
    if not (settings.jwks_url or token or current):
        return True
    if user is not None and (token or settings.jwks_url or user != current):
        fail(
            "--user picks the local user on a fresh install (local mode, before `taskflow "
            "init` or `taskflow login`); you already have one: drop --user to import as yourself",
            USAGE,
        )
    return False


def _remember(settings: Settings, setup: LocalSetup, *, chosen: bool, quiet: bool) -> None:
    """Record the adopted user as `taskflow init` does, and say so in one line."""
    path = save_config(
        settings.data_dir,
        LocalConfig(current_user=setup.user.handle, default_project=setup.project),
    )
    if quiet:
        return
    origin = "--user" if chosen else "the store's config.json"
    made = "Created human worker" if setup.user_created else "Using existing human worker"
    success(
        f"{made} [bold]{setup.user.handle}[/] (from {origin}): you are "
        f"{setup.user.handle} from now on, as after `taskflow init` (config: {escape(str(path))})"
    )


def _report(report: importer.ImportReport, total: int) -> None:
    if not report.changed:
        success(f"Nothing new: all {total} records of this store were imported before")
        return
    table = Table(title=f"Imported {report.source}", title_justify="left")
    table.add_column("What")
    table.add_column("Count", justify="right")
    table.add_column("Which", overflow="fold")
    table.add_row(
        "Projects created", str(len(report.projects_created)), ", ".join(report.projects_created)
    )
    table.add_row(
        "Projects merged", str(len(report.projects_merged)), ", ".join(report.projects_merged)
    )
    table.add_row(
        "Workers created", str(len(report.workers_created)), ", ".join(report.workers_created)
    )
    table.add_row(
        "Workers matched", str(len(report.workers_matched)), ", ".join(report.workers_matched)
    )
    table.add_row("Memberships added", str(report.memberships_added), "")
    table.add_row("Tasks", str(report.tasks_imported), "")
    table.add_row("Audit entries", str(report.audit_entries_imported), "")
    table.add_row("Deleted tasks' histories", str(report.deleted_task_histories), "")
    table.add_row(
        "Subtasks moved to their parent's project",
        str(len(report.tasks_moved)),
        _ids(report.tasks_moved),
    )
    table.add_row(
        "Subtasks detached (parent deleted)",
        str(len(report.tasks_detached)),
        _ids(report.tasks_detached),
    )
    table.add_row("Already imported before", str(report.already_imported), "")
    out().print(table)
    if report.tasks_renumbered:
        pairs = ", ".join(f"#{old} → #{new}" for old, new in report.tasks_renumbered.items())
        note(f"Task ids already taken here were renumbered: {pairs}")
    success("Done. Check it with `taskflow list` and `taskflow audit verify`")


def _ids(phase1_ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in phase1_ids)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command()(serve)
    app.command()(mcp)
    app.command("import")(import_)

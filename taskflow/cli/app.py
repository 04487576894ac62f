"""The `taskflow` command: Phase 1's commands on PostgreSQL, plus Phase 2's.

Each command parses its options, makes one core service call through `session.call`, and
renders the result. `main` is the console script: it turns usage mistakes into one red line
(exit 2) and keeps tracebacks for real bugs (shown in full with TASKFLOW_DEBUG=1).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

try:  # Typer 0.2x vendors Click; older Typer used the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from taskflow.cli import repl
from taskflow.cli.commands import account, audit, ops, projects, tasks, workers, workflow
from taskflow.cli.output import USAGE, err

ABORTS = (typer.Abort, getattr(click_errors, "Abort", typer.Abort))
EXITS = (typer.Exit, getattr(click_errors, "Exit", typer.Exit))

app = typer.Typer(
    name="taskflow",
    help="TaskFlow: a task tracker in which humans and AI agents are equal, auditable workers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~50 ms: only when asked

    try:
        return version("taskflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taskflow {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", "-v", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """TaskFlow: a task tracker in which humans and AI agents are equal, auditable workers."""


def demo(
    fast: Annotated[bool, typer.Option("--fast", help="No pauses between steps.")] = False,
    no_cleanup: Annotated[
        bool, typer.Option("--no-cleanup", help="Keep the demo project afterwards.")
    ] = False,
) -> None:
    """Watch a human and an agent share a task tree, a review, and a verified audit trail."""
    from taskflow.cli.demo import run_demo  # the story is long; load it only when asked

    run_demo(fast=fast, cleanup=not no_cleanup)


for module in (account, projects, workers, tasks, workflow, audit, ops):
    module.register(app)
app.command()(demo)
app.command()(repl.interactive)
app.command("i", hidden=True)(repl.interactive)


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None, default_map: dict[str, Any] | None = None) -> int:
    """Run one command line and return its exit code; every failure is one red line.

    The interactive session runs each of its lines through here, so a usage mistake or a
    refusal ends the line, not the session. `default_map` holds option defaults per command
    (the session's current project).
    """
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=argv, prog_name="taskflow", standalone_mode=False, default_map=default_map
        )
    except click_errors.NoArgsIsHelpError as exc:
        if exc.format_message().strip():  # Typer's Rich help has printed itself already
            typer.echo(exc.format_message())
        code = 0
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "taskflow"
        err().print(
            f"[bold red]Error:[/] {exc.format_message()} [dim](see: {where} --help)[/]",
            markup=True,
            highlight=False,
        )
        code = USAGE
    except click_errors.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except ABORTS:
        err().print("[bold red]Error:[/] aborted")
        code = 1
    except EXITS as stop:
        code = stop.exit_code
    except Exception as exc:
        if os.environ.get("TASKFLOW_DEBUG"):
            raise
        err().print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {exc} "
            "[dim](a bug: rerun with TASKFLOW_DEBUG=1 and report the traceback)[/]"
        )
        code = 1
    return code if isinstance(code, int) else 0

"""The `taskflow` command: Phase 1's commands on PostgreSQL, plus Phase 2's.

Each command parses its options, makes one core service call through `session.call`, and
renders the result. `main` is the console script: it turns usage mistakes into one red line
(exit 2) and keeps tracebacks for real bugs (shown in full with TASKFLOW_DEBUG=1).

A command line loads only the module that registers its command (`AREAS`), and Typer builds
only that command: `taskflow list` never imports the server, import or account commands, nor
parses the options of sixty others (issue 12: start-up is most of a command's time). Anything
else (`--help`, `--version`, a misspelt command) gets the whole app, so help and "no such
command" read exactly as before. `app` (the whole app, as tests and the interactive session use
it) is built on first use.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

try:  # Typer 0.2x vendors Click; older Typer used the click package
    from typer._click import Command
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import Command  # type: ignore[assignment]
    from click import exceptions as click_errors  # type: ignore[no-redef]

from taskflow.cli.output import USAGE, err

ABORTS = (typer.Abort, getattr(click_errors, "Abort", typer.Abort))
EXITS = (typer.Exit, getattr(click_errors, "Exit", typer.Exit))

AREAS: dict[str, tuple[str, ...]] = {
    "taskflow.cli.commands.account": ("init", "login", "logout", "whoami", "status"),
    "taskflow.cli.commands.projects": ("project", "member"),
    "taskflow.cli.commands.workers": ("worker", "agent"),
    "taskflow.cli.commands.tasks": ("add", "subtask", "show", "edit", "delete", "due"),
    "taskflow.cli.commands.listing": ("list", "search", "upcoming", "overdue"),
    "taskflow.cli.commands.workflow": (
        "start",
        "progress",
        "complete",
        "review",
        "approve",
        "reject",
        "delegate",
        "assign",
        "block",
        "unblock",
        "reopen",
        "move",
        "claim",
    ),
    "taskflow.cli.commands.coordination": ("depend", "heartbeat"),
    "taskflow.cli.commands.feed": ("comment", "edit-comment", "comments", "changes", "watch"),
    "taskflow.cli.commands.audit": ("audit",),
    "taskflow.cli.commands.webhooks": ("webhook",),
    "taskflow.cli.commands.ops": ("db", "serve", "mcp", "import"),
    __name__: ("demo",),
    "taskflow.cli.repl": ("interactive", "i"),
}
"""Each module with a `register(app)`, in help order, and the top-level names it registers
(`tests/cli/test_coverage.py` checks the names against what the modules really register)."""

AREA_OF = {name: area for area, names in AREAS.items() for name in names}

if TYPE_CHECKING:
    app: typer.Typer  # built on first use, by the module's `__getattr__`


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


def register(app: typer.Typer) -> None:
    app.command()(demo)


def build_app(areas: Iterable[str] = AREAS, *, only: str | None = None) -> typer.Typer:
    """The Typer app with the commands of these areas (module names of `AREAS`), in help order;
    with `only`, just that top-level command (or group) of them."""
    built = typer.Typer(
        name="taskflow",
        help="TaskFlow: a task tracker in which humans and AI agents are equal, auditable workers.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    built.callback()(root)
    wanted = set(areas)
    for area in AREAS:
        if area in wanted:
            importlib.import_module(area).register(built)
    if only is not None:
        built.registered_commands = [c for c in built.registered_commands if _name(c) == only]
        built.registered_groups = [g for g in built.registered_groups if g.name == only]
    return built


def _name(command: Any) -> str:
    """A registered command's name as Typer derives it (`list_tasks` registered as `list`)."""
    return command.name or typer.main.get_command_name(command.callback.__name__)


def __getattr__(name: str) -> Any:
    """`app`: the whole app, built when first asked for (tests, the interactive session)."""
    if name == "app":
        return _whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _whole_app() -> typer.Typer:
    return build_app()


@cache
def _command(name: str | None) -> Command:
    """The Click command of one top-level command (None: all of them), built once per process."""
    if name is None:
        return typer.main.get_command(_whole_app())
    return typer.main.get_command(build_app([AREA_OF[name]], only=name))


def command_for(argv: list[str]) -> Command:
    """Only the command the line names (its area's module imported); everything for anything
    else (help, `--version`, a misspelt command), so those read exactly as before."""
    first = argv[0] if argv else None
    return _command(first if first in AREA_OF else None)


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    args = sys.argv[1:] if argv is None else list(argv)
    with collector_off_while_loading():
        command_for(args)
    sys.exit(run(args))


@contextmanager
def collector_off_while_loading() -> Iterator[None]:
    """Import a command's modules with Python's cyclic garbage collector off, then freeze them.

    The modules of `taskflow list` (SQLAlchemy above all) make hundreds of thousands of objects
    that live until the process ends. With the collector on, importing them runs full
    collections that walk them again and again, and the interpreter walks them once more at
    exit: measured, about 15% of the import time and 120 ms at exit. Frozen (`gc.freeze`), they
    are never scanned again; everything the command itself makes is collected as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def run(argv: list[str] | None = None, default_map: dict[str, Any] | None = None) -> int:
    """Run one command line and return its exit code; every failure is one red line.

    The interactive session runs each of its lines through here, so a usage mistake or a
    refusal ends the line, not the session. `default_map` holds option defaults per command
    (the session's current project).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    command = command_for(args)
    try:
        code = command.main(
            args=args, prog_name="taskflow", standalone_mode=False, default_map=default_map
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

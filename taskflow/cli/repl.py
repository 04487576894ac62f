"""`taskflow interactive` (alias `i`): every command at one prompt, on one open database.

A command line outside costs a process start, the settings, the embedded database start, a
schema check and a connection; here they are paid once, when the session starts (see
`session.keep_runtime`). Each line is split like a shell would (`shlex`) and run through the
same Typer app as the command line, so a mistake or a refusal prints its one red line and the
session goes on. `use <project>` sets the session's project: every command that takes
`-p/--project` defaults to it. History is kept in `<data dir>/history`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from taskflow.cli.local_state import load_config
from taskflow.cli.output import err, fail, out, success
from taskflow.cli.session import Kept, call, keep_runtime, load_settings, refusal
from taskflow.core.errors import TaskFlowError
from taskflow.core.services import projects

HISTORY_FILE = "history"
LEAVE = ("exit", "quit")
BUILTINS = {
    "use PROJECT": "make PROJECT the default of every -p/--project (`use` alone: show it)",
    "help [COMMAND]": "this list, or a command's options",
    "exit, quit, Ctrl-D": "leave the session (Ctrl-C cancels the current line)",
}
REFUSED = {
    ("interactive",): "you are in the interactive session already",
    ("i",): "you are in the interactive session already",
    ("mcp",): "`taskflow mcp` takes over the terminal's stdin/stdout: run it outside this session",
    ("db", "stop"): "this session holds the database open: `exit`, then `taskflow db stop`",
}

Reader = Callable[[str], str]


def interactive() -> None:
    """A prompt for every command (without `taskflow`), on one open database."""
    from taskflow.cli.app import app, run  # the app registers this command: import it late

    settings = load_settings()
    try:
        with keep_runtime(settings) as kept:
            Repl(kept, typer.main.get_command(app), run).loop()
    except TaskFlowError as exc:
        fail(refusal(exc))


class Repl:
    """The read-run loop of one session."""

    def __init__(self, kept: Kept, root: Any, run: Callable[..., int]) -> None:
        self.kept = kept
        self.root = root
        self.run = run

    def loop(self) -> None:
        read = self.reader()
        while True:
            try:
                if not self.handle(read(self.prompt())):
                    break
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt (or between commands) drops the line, as in a shell
            except EOFError:
                break

    def reader(self) -> Reader:
        """prompt_toolkit on a terminal (history, editing, completion); plain lines otherwise."""
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return _plain_reader
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory

        data_dir = self.kept.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        words = [*self.commands(), "use", "help", *LEAVE]
        session: Any = PromptSession(
            history=FileHistory(str(history_path(data_dir))),
            completer=WordCompleter(words, sentence=True),
        )
        return lambda text: str(session.prompt(text))

    def prompt(self) -> str:
        handle = self.kept.handle()
        return f"taskflow {handle or '(nobody)'}/{self.project()}> "

    def project(self) -> str:
        if self.kept.project is not None:
            return self.kept.project
        return load_config(self.kept.settings.data_dir).default_project

    def handle(self, line: str) -> bool:
        """Run one line; False when it asks to leave."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            _red(f"cannot read that line: {exc}")
            return True
        if not argv:
            return True
        if argv[0] in LEAVE:
            return False
        try:
            self.dispatch(argv)
        except KeyboardInterrupt:
            _red("interrupted")
        except (typer.Exit, SystemExit):
            pass  # a built-in's refusal has printed its red line
        return True

    def dispatch(self, argv: list[str]) -> None:
        if argv[0] == "help":
            self.help(argv[1:])
        elif argv[0] == "use":
            self.use(argv[1:])
        elif refusal := _refusal(argv):
            _red(refusal)
        else:
            self.run(argv, default_map=project_defaults(self.root, self.project()))

    def use(self, args: list[str]) -> None:
        if not args:
            out().print(f"Current project: [bold]{escape(self.project())}[/]")
            return
        if len(args) > 1:
            _red("use takes one project slug, e.g. `use web`")
            return
        found = call(lambda s: projects.get_project(s.db, s.actor, args[0]))
        self.kept.project = found.slug
        success(f"Using project [bold]{escape(found.slug)}[/] ({escape(found.name)})")

    def commands(self) -> list[str]:
        """The app's visible top-level commands, in the order `taskflow --help` shows them."""
        return [name for name, command in self.root.commands.items() if not command.hidden]

    def help(self, args: list[str]) -> None:
        if args:
            self.run([*args, "--help"])
            return
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for usage, what in BUILTINS.items():
            table.add_row(usage, what)
        table.add_row("", "")
        for name in self.commands():
            table.add_row(name, self.root.commands[name].get_short_help_str(limit=80))
        out().print(table)
        out().print("[dim]`help COMMAND` shows a command's options.[/]")


def history_path(data_dir: Path) -> Path:
    return data_dir / HISTORY_FILE


def project_defaults(group: Any, project: str) -> dict[str, Any]:
    """Click's `default_map`: `project` for every command (in every group) with `--project`."""
    defaults: dict[str, Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            nested = project_defaults(command, project)
            if nested:
                defaults[name] = nested
        elif any(p.name == "project" and "--project" in p.opts for p in command.params):
            defaults[name] = {"project": project}
    return defaults


def _refusal(argv: list[str]) -> str | None:
    for words, why in REFUSED.items():
        if tuple(argv[: len(words)]) == words:
            return why
    return None


def _plain_reader(text: str) -> str:
    """Lines from a pipe (`taskflow i < script`): no prompt, no history."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


def register(app: typer.Typer) -> None:
    app.command()(interactive)
    app.command("i", hidden=True)(interactive)


def _red(message: str) -> None:
    err().print(f"[bold red]Error:[/] {escape(message)}")

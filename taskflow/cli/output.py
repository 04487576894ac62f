"""Where output goes: Rich for people, JSON for scripts, one red line on stderr for errors.

Consoles are made per use, so they follow the current `sys.stdout` (Typer's test runner swaps
it) and Rich's own rules: no colour when the output is not a terminal or `NO_COLOR` is set.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console, RenderableType
from rich.markup import escape

USAGE = 2
REFUSED = 1


def out() -> Console:
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """The core's pydantic models as JSON, unchanged, so scripts see what MCP and REST see."""
    typer.echo(json.dumps(to_jsonable_python(value), indent=2, ensure_ascii=False))


def success(message: str) -> None:
    out().print(f"[green]✓[/] {message}")


def answer(value: Any, json_: bool, message: str) -> None:
    """A change's result: the core's model as JSON for scripts, else one success line."""
    if json_:
        emit_json(value)
    else:
        success(message)


def show(value: Any, json_: bool, view: RenderableType) -> None:
    """A read's result: the core's model as JSON for scripts, else a table or panel."""
    if json_:
        emit_json(value)
    else:
        out().print(view)


def note(message: str) -> None:
    err().print(f"[dim]{message}[/]")


def fail(message: str, code: int = REFUSED) -> NoReturn:
    """Print one red line and stop: 1 for a refused operation, 2 for a usage mistake."""
    err().print(f"[bold red]Error:[/] {escape(message)}")
    raise typer.Exit(code)

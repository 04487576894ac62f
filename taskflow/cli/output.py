"""Where output goes: Rich for people, JSON for scripts, one red line on stderr for errors.

Consoles are made per use, so they follow the current `sys.stdout` (Typer's test runner swaps
it) and Rich's own rules: no colour when the output is not a terminal or `NO_COLOR` is set.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
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


def note(message: str) -> None:
    err().print(f"[dim]{message}[/]")


def fail(message: str, code: int = REFUSED) -> NoReturn:
    """Print one red line and stop: 1 for a refused operation, 2 for a usage mistake."""
    err().print(f"[bold red]Error:[/] {escape(message)}")
    raise typer.Exit(code)

"""Options shared by many commands, and turning their values into the core's input models.

The core's pydantic models are the single source of truth for limits and formats: the CLI
passes what the user typed and reports the model's complaint as a usage error (exit 2).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError

from taskflow.cli.output import USAGE, fail
from taskflow.core.domain import Priority, TaskStatus
from taskflow.core.schemas import DueDate

M = TypeVar("M", bound=BaseModel)

Json = Annotated[bool, typer.Option("--json", help="Print JSON (the core's models) for scripts.")]
TaskId = Annotated[int, typer.Argument(help="Task id, as shown by `taskflow list`.", min=1)]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", "-p", help="Project slug (default: all your projects).")
]
PriorityOpt = Annotated[Priority | None, typer.Option("--priority", help="Task priority.")]
StatusOpt = Annotated[TaskStatus | None, typer.Option("--status", "-s", help="Only this status.")]

_OPTION_FOR = {
    "assignee": "--assign",
    "due_date": "--due",
    "parent_id": "--parent",
    "created_by": "--created-by",
    "progress_percent": "--percent",
}


def build(model: type[M], **fields: Any) -> M:
    """Validate the user's input with the core model; options not given (None) are left out."""
    return build_exact(model, {k: v for k, v in fields.items() if v is not None})


def build_exact(model: type[M], fields: dict[str, Any]) -> M:
    """Validate exactly these fields (None included: it clears); a bad value is a usage error."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "input"
        option = _OPTION_FOR.get(name, "--" + name.replace("_", "-"))
        fail(f"{option}: {first['msg']} (got {first.get('input')!r})", USAGE)


CLEAR_WORDS = ("none", "null", "-")


def clears(value: str) -> bool:
    """`--assign none` or `--parent none` clear the field."""
    return value.strip().lower() in CLEAR_WORDS


def parse_date(value: str, option: str) -> datetime | None:
    """A date as the core reads it (a bare date is midnight UTC)."""
    try:
        return TypeAdapter(DueDate).validate_python(value)
    except ValidationError:
        fail(f"{option}: expected a date like 2026-12-01 (got {value!r})", USAGE)


def split_tags(value: str | None) -> list[str] | None:
    """Phase 1 took tags as `a,b,c`."""
    if value is None:
        return None
    return [tag.strip() for tag in value.split(",") if tag.strip()]

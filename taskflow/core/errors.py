"""Domain errors every surface maps to its own form.

Each error carries a message written for the caller: what was wrong and what to do next.
REST maps `status` to the HTTP status and `code` to the problem type; MCP returns the message
as an `isError` tool result; the CLI prints it in one red line and exits 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NextStep:
    """What the caller should do instead, as data: an operation and its arguments.

    Each surface words it in its own vocabulary from the operation's declaration:
    `call start_task(task_id=8)` on MCP, `POST /api/tasks/8/start` on REST, `taskflow start 8`
    on the CLI. The core never writes surface-specific text.
    """

    operation: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


class TaskFlowError(Exception):
    """Base of every error a caller can cause or must handle."""

    status: int = 400
    code: str = "error"
    title: str = "Request refused"

    def __init__(self, message: str, *, next_step: NextStep | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.next_step = next_step
        self.extra = extra

    def __str__(self) -> str:
        return self.message


class ValidationFailed(TaskFlowError):
    """Input broke a rule (a field out of range, a malformed handle)."""

    status = 422
    code = "validation-failed"
    title = "Invalid input"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One refused argument: its dotted path, why, and a machine-readable reason."""

    field: str
    message: str
    type: str


class InvalidInput(ValidationFailed):
    """A command's arguments were refused; `problems` names each one (unknown ones with the
    nearest valid name), so every surface can point at the fields in its own terms."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        super().__init__(f"invalid input: {listed}", field=problems[0].field if problems else None)
        self.problems = problems


class NotFound(TaskFlowError):
    """The thing does not exist, or the caller may not know it exists."""

    status = 404
    code = "not-found"
    title = "Not found"


class Forbidden(TaskFlowError):
    """The caller is known and may see the thing, but not do this to it."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class InvalidTransition(TaskFlowError):
    """The workflow does not allow this move from the task's current status."""

    status = 409
    code = "invalid-transition"
    title = "Invalid status transition"


class Conflict(TaskFlowError):
    """The change collides with the current state (a duplicate, a cycle, a non-empty parent)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class StaleVersion(Conflict):
    """The caller based its change on an older version than the stored one."""

    status = 412
    code = "stale-version"
    title = "Stale version"


class Unauthenticated(TaskFlowError):
    """No credentials, or credentials that do not prove who the caller is."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Unavailable(TaskFlowError):
    """A dependency (the database, the auth server) cannot be reached right now."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"


class RateLimited(TaskFlowError):
    """The caller is over a limit (its rate per worker, or a costly call already running);
    `retry_after` says in how many seconds to try again."""

    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after

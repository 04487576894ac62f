"""Domain errors as tool results an agent can act on: `isError`, one clear message, no traceback.

The core's refusals carry the next step as data (an operation and its arguments); here it
becomes the tool call to make (`Next: call start_task(task_id=8).`), so the next step an agent
reads is a tool it can call. The machine-readable code travels in `_meta`, not in
`structuredContent`: clients validate `structuredContent` against the tool's output schema even
on errors (the TypeScript SDK does), and an error body would fail that check.
"""

from __future__ import annotations

import json

from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from taskflow.core.declarations import REGISTRY
from taskflow.core.errors import NextStep, TaskFlowError, ValidationFailed


def tool_of(operation: str) -> str:
    """The tool that performs a core operation: its declared MCP name."""
    declared = REGISTRY.get(operation)
    return declared.mcp if declared is not None and declared.mcp else operation


def next_call(step: NextStep) -> str:
    """The next step as the tool call to make, e.g. `start_task(task_id=8)`."""
    arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in step.arguments.items())
    return f"{tool_of(step.operation)}({arguments})"


META_KEY = "taskflow/error"
_PRIVATE_EXTRA = frozenset({"cause"})  # driver messages may name hosts; they stay in the log


def for_agents(exc: TaskFlowError) -> str:
    """The refusal in this surface's words: the core's message, then the next step as the tool
    call to make and, for a refused move, the tools that make the moves allowed."""
    text = exc.message
    if exc.next_step is not None:
        text = f"{text} Next: call {next_call(exc.next_step)}."
    allowed = exc.extra.get("allowed")
    if isinstance(allowed, list) and allowed:
        text = f"{text} Allowed: {', '.join(tool_of(str(a)) for a in allowed)}."
    return text


def error_result(exc: TaskFlowError) -> CallToolResult:
    detail = {k: v for k, v in exc.extra.items() if k not in _PRIVATE_EXTRA}
    meta = {"code": exc.code, "status": exc.status, **detail}
    text = for_agents(exc)
    if exc.next_step is not None:
        step = exc.next_step
        meta["next_step"] = {"tool": tool_of(step.operation), "arguments": dict(step.arguments)}
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        is_error=True,
        _meta={META_KEY: to_jsonable_python(meta, fallback=str)},
    )


def invalid_input(exc: ValidationError) -> ValidationFailed:
    """A pydantic refusal in one line per field, without echoing the values back."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "input"
        parts.append(f"{where}: {err['msg']}")
    return ValidationFailed("invalid input: " + "; ".join(parts))

"""Domain errors as tool results an agent can act on: `isError`, one clear message, no traceback.

The core words its refusals with operation names ("call start first", "in_progress (start)");
here those names become this surface's tool names ("call start_task first"), so the next step
an agent reads is a tool it can call. The machine-readable code travels in `_meta`, not in
`structuredContent`: clients validate `structuredContent` against the tool's output schema even
on errors (the TypeScript SDK does), and an error body would fail that check.
"""

from __future__ import annotations

import re
from typing import Any

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
    arguments = ", ".join(f"{k}={v!r}" for k, v in step.arguments.items())
    return f"{tool_of(step.operation)}({arguments})"


META_KEY = "taskflow/error"
_PRIVATE_EXTRA = frozenset({"cause"})  # driver messages may name hosts; they stay in the log

_VERB = "start|request_review|complete|block|unblock|approve|reject|progress|delegate|assign"
_REWRITES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(rf"\(({_VERB})\)"), lambda m: f"({tool_of(m.group(1))})"),
    (re.compile(rf"\bcall ({_VERB})\b"), lambda m: f"call {tool_of(m.group(1))}"),
    (re.compile(rf": ({_VERB}) first\b"), lambda m: f": call {tool_of(m.group(1))} first"),
    (re.compile(r"\(start it again\)"), lambda m: f"(call {tool_of('start')} again)"),
    (re.compile(r"\bthen start it\b"), lambda m: f"then call {tool_of('start')}"),
    (re.compile(r"\((list_\w+) / `[^`]*`\)"), lambda m: f"({m.group(1)})"),
    (re.compile(r"\(`taskflow agent rotate` or POST [^)]*\)"), lambda m: "(rotate_api_key)"),
]


def for_agents(message: str) -> str:
    """The core's message with operation names replaced by the tools that perform them."""
    for pattern, replacement in _REWRITES:
        message = pattern.sub(replacement, message)
    return message


def error_result(exc: TaskFlowError) -> CallToolResult:
    detail = {k: v for k, v in exc.extra.items() if k not in _PRIVATE_EXTRA}
    meta = {"code": exc.code, "status": exc.status, **detail}
    text = for_agents(exc.message)
    if exc.next_step is not None:
        step = exc.next_step
        meta["next_step"] = {"tool": tool_of(step.operation), "arguments": dict(step.arguments)}
        text = f"{text} Next: call {next_call(step)}."
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

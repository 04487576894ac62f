"""What every tool shares: annotations, registration, and the read / write call paths.

A tool body only parses its input and names one core service; `Surface.read` and
`Surface.write` resolve the caller, run the service, replay idempotent retries, and render the
answer (compact JSON text plus `structuredContent`) or the refusal (`isError`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_jsonable_python

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.errors import TaskFlowError, ValidationFailed
from taskflow.core.idempotency import run_once
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.errors import error_result, invalid_input
from taskflow.mcp_server.identity import Identity
from taskflow.mcp_server.schema import compact

M = TypeVar("M", bound=BaseModel)

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
# Adds state (a task, an audit entry); a repeat adds again unless it carries an idempotency key.
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
# A repeat changes nothing: the workflow table refuses the same move twice, or the values match.
IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
# May delete or revoke something (an action of a grouped tool does).
DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)

REPLAYED_META = "taskflow/replayed"

# Explained once in the server instructions; terse here because every mutating tool has both.
ExpectedVersion = Annotated[int | None, Field(ge=1, description="Optimistic lock")]
IdempotencyKey = Annotated[str | None, Field(description="Retry-safe key")]
TaskId = Annotated[int, Field(ge=1, description="Task id")]

_SENT: ContextVar[frozenset[str]] = ContextVar("taskflow_mcp_sent", default=frozenset())


class TaskflowTool(Tool):
    """An SDK tool that remembers which arguments the caller actually sent.

    Partial updates need it: `update_task` changes only the fields sent, and `null` clears one.
    """

    async def run(
        self, arguments: dict[str, Any], context: Any, convert_result: bool = False
    ) -> Any:
        token = _SENT.set(frozenset(arguments))
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            # Arguments that fail the input schema: one line per field, like every refusal,
            # instead of the SDK's multi-line pydantic dump with documentation links.
            if isinstance(exc.__cause__, ValidationError):
                return error_result(invalid_input(exc.__cause__))
            raise
        finally:
            _SENT.reset(token)


def sent() -> frozenset[str]:
    """The argument names of the current tool call."""
    return _SENT.get()


REQUIRED = inspect.Parameter.empty


def param(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    """One keyword-only parameter of a synthetic tool signature (optional unless REQUIRED)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def make_tool(
    fn: Callable[..., Awaitable[CallToolResult]],
    *,
    description: str,
    annotations: ToolAnnotations,
    params: list[inspect.Parameter] | None = None,
    output: type[BaseModel] | None = None,
) -> Tool:
    """Register `fn` under its own name with compacted input and output schemas.

    With `params`, `fn(ctx, **kwargs)` gets a synthetic signature so its input schema is flat
    (the SDK reads `inspect.signature` and, for the context parameter, `__annotations__`).
    """
    if params is not None:
        assert output is not None
        ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
        fn.__signature__ = inspect.Signature([*params, ctx], return_annotation=output)  # type: ignore[attr-defined]
        fn.__annotations__ = {"ctx": Context, "return": output}
    tool = TaskflowTool.from_function(
        fn, description=description, annotations=annotations, structured_output=True
    )
    tool.parameters = compact(tool.parameters) or {}
    tool.fn_metadata.output_schema = compact(tool.fn_metadata.output_schema, output=True)
    return tool


def ok(model: BaseModel, *, replayed: bool = False) -> CallToolResult:
    data = model.model_dump(mode="json")
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, separators=(",", ":")))],
        structured_content=data,
        _meta={REPLAYED_META: True} if replayed else None,
    )


class Surface:
    """The runtime and the caller's identity, shared by every tool of one server."""

    def __init__(self, runtime: Runtime, identity: Identity) -> None:
        self.runtime = runtime
        self.identity = identity

    @property
    def db(self) -> Database:
        return self.runtime.db

    async def read(
        self, ctx: Context, op: Callable[[Actor], Awaitable[BaseModel]]
    ) -> CallToolResult:
        """Run a read-only service as the caller."""
        try:
            actor = await self.identity.resolve(ctx)
            return ok(await op(actor))
        except TaskFlowError as exc:
            return error_result(exc)
        except ValidationError as exc:
            return error_result(invalid_input(exc))

    async def write(
        self,
        ctx: Context,
        tool: str,
        args: dict[str, Any],
        op: Callable[[Actor], Awaitable[M]],
        output: type[M],
    ) -> CallToolResult:
        """Run a mutating service once per idempotency key (`args["idempotency_key"]`).

        A retry with the same key and arguments returns the stored first result and runs
        nothing (no new audit entry); the same key with other arguments is refused.
        """
        key = args.get("idempotency_key")
        body = {k: v for k, v in args.items() if k != "idempotency_key" and k in sent()}
        try:
            actor = await self.identity.resolve(ctx)

            async def operation() -> tuple[int, Any]:
                return 200, await op(actor)

            _, result, replayed = await run_once(
                self.db, actor, key, f"mcp:{tool}", to_jsonable_python(body), operation
            )
            model = output.model_validate(result) if replayed else result
            return ok(model, replayed=replayed)
        except TaskFlowError as exc:
            return error_result(exc)
        except ValidationError as exc:
            return error_result(invalid_input(exc))


def check_action(action: str, given: frozenset[str], allowed: dict[str, set[str]]) -> None:
    """Refuse arguments the chosen action of a grouped tool does not use (never ignore them)."""
    stray = sorted(given - allowed[action] - {"action", "idempotency_key"})
    if stray:
        raise ValidationFailed(
            f"action={action} does not take {', '.join(stray)}: it takes "
            f"{', '.join(sorted(allowed[action])) or 'nothing else'}",
            field=stray[0],
        )


def require(action: str, name: str, value: Any) -> Any:
    """The value of an argument the action needs, or a refusal naming it."""
    if value is None:
        raise ValidationFailed(f"action={action} needs {name}", field=name)
    return value

"""MCP tools generated from the operation declarations (`taskflow.core.declarations`).

Each declared operation with an `mcp` name becomes one tool: its input schema is the command's
(plus `idempotency_key` on a change), its output schema the handler's answer, its annotations
the declaration's read-only / destructive / idempotent flags, its description the handler's
docstring. A call resolves the caller, refuses arguments the command does not know (naming the
nearest one), dispatches the command once per key, and answers with structured content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as McpTool
from pydantic import BaseModel, TypeAdapter

from taskflow.core.declarations import Operation
from taskflow.core.dispatcher import dispatch
from taskflow.core.errors import NotFound, TaskFlowError, ValidationFailed
from taskflow.mcp_server.errors import error_result
from taskflow.mcp_server.schema import compact
from taskflow.mcp_server.toolkit import REPLAYED_META, Surface

IDEMPOTENCY_KEY = "idempotency_key"
_KEY_SCHEMA = {"type": "string", "maxLength": 255, "description": "Retry-safe key"}


@dataclass(frozen=True)
class GeneratedTool:
    """One operation as a tool, with what it takes to answer in an object (MCP's
    `structuredContent` must be one): models answer as themselves, lists as `items`, anything
    else as `result`."""

    operation: Operation
    tool: McpTool
    answer: TypeAdapter[Any]
    wrap: str | None

    def structured(self, value: Any) -> dict[str, Any]:
        projection = self.operation.mcp_output
        if projection is not None:
            of = getattr(projection, "of", None)
            value = of(value) if of else self.answer.validate_python(value, from_attributes=True)
        data = self.answer.dump_python(value, mode="json")
        return {self.wrap: data} if self.wrap else data


def _wrapping(output: Any) -> str | None:
    if isinstance(output, type) and issubclass(output, BaseModel):
        return None
    return "items" if getattr(output, "__origin__", None) is list else "result"


def tool_for(operation: Operation) -> GeneratedTool:
    """The tool an agent sees for `operation`, built from its declaration alone."""
    assert operation.mcp is not None
    inputs = compact(operation.command.model_json_schema()) or {"type": "object"}
    if operation.mutating:
        inputs.setdefault("properties", {})[IDEMPOTENCY_KEY] = _KEY_SCHEMA
    output = operation.mcp_output or operation.output()
    answer = TypeAdapter(output)
    wrap = _wrapping(output)
    shape = answer.json_schema(mode="serialization")
    if wrap:
        defs = shape.pop("$defs", None)
        shape = {"type": "object", "properties": {wrap: shape}, "required": [wrap]}
        if defs:
            shape["$defs"] = defs  # references are resolved from the root
    description = (operation.handler.__doc__ or operation.summary).strip().split("\n\n")[0]
    tool = McpTool(
        name=operation.mcp,
        description=" ".join(description.split()),
        input_schema=inputs,
        output_schema=compact(shape, output=True),
        annotations=ToolAnnotations(
            read_only_hint=operation.read_only,
            destructive_hint=operation.destructive,
            idempotent_hint=operation.idempotent,
            open_world_hint=False,
        ),
    )
    return GeneratedTool(operation, tool, answer, wrap)


class OperationTools:
    """The generated tools of one server, bound to its surface (runtime and identity)."""

    def __init__(self, operations: list[Operation], surface: Surface) -> None:
        self.surface = surface
        self.by_name: dict[str, GeneratedTool] = {}
        for operation in operations:
            if operation.mcp is None:
                continue
            if operation.mcp in self.by_name:
                raise ValueError(f"two operations declare the MCP tool {operation.mcp!r}")
            self.by_name[operation.mcp] = tool_for(operation)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def listed(self, toolsets: frozenset[str], *, read_only: bool = False) -> list[McpTool]:
        """The tools of these toolsets; for a read-only key, only those that change nothing."""
        return [
            g.tool
            for g in self.by_name.values()
            if g.operation.toolset in toolsets and (g.operation.read_only or not read_only)
        ]

    def offered(self, name: str, toolsets: frozenset[str]) -> bool:
        return self.by_name[name].operation.toolset in toolsets

    def input_schema(self, name: str) -> dict[str, Any] | None:
        generated = self.by_name.get(name)
        return None if generated is None else generated.tool.input_schema

    async def call(
        self, name: str, arguments: dict[str, Any], ctx: Context, toolsets: frozenset[str]
    ) -> CallToolResult:
        """Run the tool's operation as the caller; a refusal is an `isError` result."""
        generated = self.by_name[name]
        operation = generated.operation
        args = dict(arguments)
        key = args.pop(IDEMPOTENCY_KEY, None) if operation.mutating else None
        try:
            if operation.toolset not in toolsets:
                raise NotFound(
                    f"{name} is in the {operation.toolset} toolset, which this session did not "
                    f"ask for: connect with toolsets={operation.toolset} (or all)",
                    entity="tool",
                )
            if key is not None and not isinstance(key, str):
                raise ValidationFailed("idempotency_key must be a string", field=IDEMPOTENCY_KEY)
            actor = await self.surface.identity.resolve(ctx)
            limiter = self.surface.runtime.limiter
            if limiter is not None:
                await limiter.admit(actor.worker_id, operation.mutating, actor.handle)
            command = operation.parse(args)
            outcome = await dispatch(self.surface.db, actor, command, idempotency_key=key)
        except TaskFlowError as exc:
            return error_result(exc)
        data = generated.structured(outcome.value)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(data, separators=(",", ":")))],
            structured_content=data,
            _meta={REPLAYED_META: True} if outcome.replayed else None,
        )

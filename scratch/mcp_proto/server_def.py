"""Shared prototype MCPServer used by the other scripts in scratch/mcp_proto/.

Proves: tool registration (name, description, typed params, pydantic input model,
ToolAnnotations, pydantic output model -> outputSchema/structuredContent), ToolError,
resources with URI templates, and reading identity + headers from Context.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

TASKS: dict[int, dict[str, Any]] = {1: {"id": 1, "title": "first", "status": "todo"}}


class TaskOut(BaseModel):
    id: int
    title: str
    status: Literal["todo", "doing", "done"]


class CreateTaskIn(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200, description="Task title")]
    status: Literal["todo", "doing", "done"] = "todo"


class WhoAmIOut(BaseModel):
    client_id: str | None
    subject: str | None
    scopes: list[str]
    user_agent: str | None
    x_request_id: str | None
    via_contextvar: str | None


READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


def flatten_model(model: type[BaseModel]):
    """Decorator: expose `fn(args: Model, ctx)` as a tool whose *top-level* params are the
    model's fields (so inputSchema is flat, not {"args": {...}}). Works because the SDK's
    func_metadata uses inspect.signature(), which honours __signature__."""

    def deco(fn):
        params = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[(f.annotation, f)],  # keep Field metadata (description, limits)
                default=inspect.Parameter.empty if f.is_required() else f.default,
            )
            for name, f in model.model_fields.items()
        ]
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
        ret = inspect.signature(fn, eval_str=True).return_annotation

        async def wrapper(ctx: Context, **kwargs):
            return await fn(model(**kwargs), ctx)

        wrapper.__signature__ = inspect.Signature(params, return_annotation=ret)
        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        # find_context_parameter() uses typing.get_type_hints(), i.e. __annotations__:
        wrapper.__annotations__ = {"ctx": Context, "return": ret}
        return wrapper

    return deco


def build_server(**kwargs: Any) -> MCPServer:
    mcp = MCPServer("taskflow-proto", version="0.0.1", instructions="TaskFlow prototype", **kwargs)

    # 1a. typed params + Field descriptions, pydantic output model, annotations
    @mcp.tool(name="get_task", description="Get one task by id.", annotations=READ_ONLY)
    async def get_task(task_id: Annotated[int, Field(ge=1, description="Task id")]) -> TaskOut:
        if task_id not in TASKS:
            raise ToolError(f"task {task_id} not found")  # -> isError result, not protocol error
        return TaskOut(**TASKS[task_id])

    # 1b. a pydantic *input model* as a single parameter (schema nests it under "data")
    @mcp.tool(name="create_task_nested", description="Create a task (nested input).", annotations=WRITE)
    async def create_task_nested(data: CreateTaskIn) -> TaskOut:
        new_id = max(TASKS) + 1
        TASKS[new_id] = {"id": new_id, **data.model_dump()}
        return TaskOut(**TASKS[new_id])

    # 1c. pydantic input model flattened to top-level params
    @flatten_model(CreateTaskIn)
    async def create_task(data: CreateTaskIn, ctx: Context) -> TaskOut:
        new_id = max(TASKS) + 1
        TASKS[new_id] = {"id": new_id, **data.model_dump()}
        return TaskOut(**TASKS[new_id])

    mcp.add_tool(create_task, name="create_task", description="Create a task.", annotations=WRITE)

    # 1d. unexpected crash: client sees only a generic message
    @mcp.tool(name="crash", description="Always crashes.", annotations=READ_ONLY)
    async def crash() -> TaskOut:
        raise RuntimeError("secret internal detail")

    # 3. identity + headers from the per-request context
    @mcp.tool(name="whoami", description="Who is calling.", annotations=READ_ONLY)
    async def whoami(ctx: Context) -> WhoAmIOut:
        req = ctx.request_context.request  # starlette Request on HTTP; None in-process/stdio
        user = getattr(req, "user", None) if req is not None else None
        tok = user.access_token if isinstance(user, AuthenticatedUser) else None
        cv = get_access_token()  # contextvar set by AuthContextMiddleware
        headers = ctx.headers or {}
        return WhoAmIOut(
            client_id=tok.client_id if tok else None,
            subject=tok.subject if tok else None,
            scopes=tok.scopes if tok else [],
            user_agent=headers.get("user-agent"),
            x_request_id=headers.get("x-request-id"),
            via_contextvar=cv.client_id if cv else None,
        )

    # 2. resources: static + URI template
    @mcp.resource("taskflow://tasks", name="tasks", mime_type="application/json")
    def list_tasks() -> str:
        import json

        return json.dumps(list(TASKS.values()))

    @mcp.resource(
        "taskflow://tasks/{id}", name="task", description="One task", mime_type="application/json"
    )
    async def task_resource(id: int) -> str:  # noqa: A002 - must match the template variable
        if id not in TASKS:
            raise ResourceNotFoundError(f"task {id} not found")
        return TaskOut(**TASKS[id]).model_dump_json()

    return mcp

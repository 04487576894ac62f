"""The TaskFlow MCP server: every core operation as a lean, annotated tool.

`build_mcp` wires the tools to one runtime and one way of knowing the caller:
- `actor=`: a fixed identity resolved at startup (stdio, in-process tests);
- `local_handle=`: a single-user installation; requests without a token act as that user,
  and a bearer token, when sent, is still honoured;
- neither: Streamable HTTP with bearer auth through the core `Authenticator` (API keys and
  Better Auth JWTs), RFC 9728 metadata pointing at the auth server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from mcp import MCPError
from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from mcp.types import (
    CallToolResult,
    EmptyResult,
    ListToolsResult,
    ReadResourceRequestParams,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)
from mcp.types import Tool as McpTool

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import bearer_token, resolve_actor
from taskflow.core.config import Settings
from taskflow.core.declarations import REGISTRY
from taskflow.core.domain import Via
from taskflow.core.errors import NotFound, TaskFlowError, Unauthenticated, Unavailable
from taskflow.core.runtime import Runtime
from taskflow.core.scopes import FULL, Scopes
from taskflow.mcp_server import (
    resources,
    toolsets,
)
from taskflow.mcp_server.errors import error_result
from taskflow.mcp_server.identity import ActorTokenVerifier, Identity
from taskflow.mcp_server.operations import OperationTools
from taskflow.mcp_server.subscriptions import Listen, Subscriptions, session_key, target_of
from taskflow.mcp_server.toolkit import Surface

INSTRUCTIONS = """\
TaskFlow tracks tasks for humans and AI agents alike; every change is audited under your handle.
Start with whoami, then list_tasks mine=true (your tasks) or claim_next_task to pick up work.
Work a task: start_task, update_progress, then request_review (or complete_task).
A claim is leased: report progress (update_progress) before lease_expires_at or the task is
freed for others. Subtasks you create under your task are yours.
Changes answer with the task's new version. Pass the version you last read as expected_version
and a change is refused if someone else changed the task since (re-read, then decide again).
Pass any unique idempotency_key on a change: a retry with the same key returns the first answer
and changes nothing again.
An error result says what to do next: read it before retrying."""

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _version() -> str:
    try:
        return version("taskflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


def auth_settings(settings: Settings) -> AuthSettings:
    """Bearer auth for HTTP; RFC 9728 metadata only when there is an auth server to point at.

    Without AUTH_SERVER_URL the server accepts agent API keys only, and there is no
    authorization server a client could discover, so no metadata is published.
    """
    if settings.auth_server_url:
        return AuthSettings(
            issuer_url=settings.auth_server_url,  # type: ignore[arg-type]
            resource_server_url=settings.taskflow_public_url.rstrip("/") + "/mcp",  # type: ignore[arg-type]
            validate_token_resource=False,  # the core checks the JWT's audience itself
        )
    return AuthSettings(issuer_url=settings.taskflow_public_url, resource_server_url=None)  # type: ignore[arg-type]


class TaskflowMCP(MCPServer):
    """The SDK's server with every tool generated from the operation declarations: the SDK
    keeps transports, auth, resources and sessions; the tool list and calls are ours."""

    def __init__(
        self,
        *args: Any,
        generated: OperationTools,
        toolsets: frozenset[str],
        local_mode: bool = False,
        subscriptions: Subscriptions | None = None,
        **kwargs: Any,
    ) -> None:
        self.generated = generated
        self.toolsets = toolsets
        self.local_mode = local_mode
        """Requests may come without a token (local user); HTTP checks the tokens sent."""
        self.subscriptions = subscriptions
        """Resource subscriptions, on transports with a session stream (stdio) only."""
        # `subscriptions=False`: not the SDK's `subscriptions/listen` (2026-07-28), whose bus
        # nothing publishes to and which knows no visibility; ours replaces it (decision 76).
        super().__init__(*args, subscriptions=False, **kwargs)
        # TaskFlow has no prompts: without these handlers the server stops advertising the
        # `prompts` capability (the SDK derives capabilities from the handlers it serves).
        for method in ("prompts/list", "prompts/get"):
            self._lowlevel_server._request_handlers.pop(method, None)
        # Ours, not the SDK's bus: each stream follows the feed with its caller's visibility.
        self._lowlevel_server.add_request_handler(
            "subscriptions/listen",
            SubscriptionsListenRequestParams,
            Listen(self, generated.surface.runtime),
        )
        # `resources.subscribe` is advertised (handshake era) exactly when these are served.
        if subscriptions is not None:
            low = self._lowlevel_server
            low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
            low.add_request_handler(
                "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe
            )

    async def check_subscription(self, ctx: Any, uris: list[str]) -> Actor:
        """The caller, once every URI names a task or project resource they can read (reading
        it is the check: a hidden one is refused as its read is, "resource not found")."""
        for uri in uris:
            if target_of(uri) is None:
                raise MCPError(
                    INVALID_PARAMS,
                    f"cannot subscribe to {uri}: subscribe to taskflow://tasks/{{id}} or "
                    "taskflow://projects/{slug}",
                    data={"uri": uri},
                )
            await self._handle_read_resource(ctx, ReadResourceRequestParams(uri=uri))
        try:
            return await self.generated.surface.identity.resolve(
                Context(request_context=ctx, mcp_server=self)
            )
        except TaskFlowError as exc:
            raise MCPError(INTERNAL_ERROR, exc.message) from None

    def recheck_of(self, ctx: Any) -> Callable[[], Awaitable[bool]]:
        """Whether this request's credentials (its bearer token, or the stdio server's key)
        still open the API: a long-lived subscription asks again from time to time."""
        identity = self.generated.surface.identity
        headers = getattr(ctx.request, "headers", None) or {}
        key = bearer_token(headers.get("authorization")) or identity.api_key

        async def still_valid() -> bool:
            if key is None:  # the local user, or an identity fixed at startup
                return True
            try:
                await resolve_actor(identity.runtime.auth, Via.MCP, token=key)
            except Unavailable:
                return True  # not the caller's doing: wait the outage out
            except TaskFlowError:
                return False
            return True

        return still_valid

    async def _subscribe(self, ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        """Watch a task or project resource the caller can read, for this session."""
        assert self.subscriptions is not None
        uri = str(params.uri)
        actor = await self.check_subscription(ctx, [uri])
        target = target_of(uri)
        assert target is not None
        session = ctx.session
        watcher = self.subscriptions.watcher(
            session_key(session), actor, session.send_resource_updated, self.recheck_of(ctx)
        )
        try:
            await watcher.add(uri, target)
        except TaskFlowError as exc:
            raise MCPError(INTERNAL_ERROR, exc.message) from None
        return EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        assert self.subscriptions is not None
        await self.subscriptions.remove(session_key(ctx.session), str(params.uri))
        return EmptyResult()

    async def run_stdio_async(self) -> None:
        """stdio: one session per process; its end stops every subscription's tasks."""
        try:
            await super().run_stdio_async()
        finally:
            if self.subscriptions is not None:
                await self.subscriptions.close()

    def _toolsets_of(self, request: Any) -> frozenset[str]:
        """The toolsets this request asked for (HTTP), else the server's own (stdio)."""
        if request is None:
            return self.toolsets
        asked = toolsets.from_request(request.query_params, request.headers)
        return self.toolsets if asked is None else toolsets.parse(asked)

    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        try:
            chosen = self._toolsets_of(ctx.request)
        except TaskFlowError as exc:
            raise MCPError(INVALID_PARAMS, exc.message) from None
        scopes = await self._scopes_of(Context(request_context=ctx, mcp_server=self))
        return ListToolsResult(tools=self.generated.listed(chosen, read_only=scopes.read_only))

    async def _scopes_of(self, context: Context[Any, Any]) -> Scopes:
        """The caller's key scopes: a read-only key is offered the read-only tools only. A
        caller not known yet sees the whole list (its calls are refused anyway)."""
        try:
            actor = await self.generated.surface.identity.resolve(context)
        except Unauthenticated:
            return FULL
        except Unavailable as exc:
            raise MCPError(INTERNAL_ERROR, exc.message) from None
        return actor.scopes

    async def list_tools(self) -> list[McpTool]:
        actor = self.generated.surface.identity.actor
        read_only = actor is not None and actor.scopes.read_only
        return self.generated.listed(self.toolsets, read_only=read_only)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        if name not in self.generated:
            unknown = NotFound(f"Unknown tool: {name} (tools/list names the tools)", entity="tool")
            return error_result(unknown)
        assert context is not None, "tools run inside a request"
        try:
            chosen = self._toolsets_of(context.request_context.request)
        except TaskFlowError as exc:
            return error_result(exc)
        result: CallToolResult = await self.generated.call(name, arguments, context, chosen)
        return result

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        return self.generated.input_schema(name)


def build_mcp(
    runtime: Runtime,
    *,
    local_handle: str | None = None,
    actor: Actor | None = None,
    log_level: LogLevel = "INFO",
    toolset_names: str | None = None,
    api_key: str | None = None,
    subscribe: bool = False,
) -> TaskflowMCP:
    """An MCP server over `runtime`; see the module docstring for the identity modes.

    `api_key` (stdio) is the key `actor` was resolved from: it is checked again on later calls,
    so revoking it ends the session. `subscribe` serves `resources/subscribe` (stdio: a
    transport with a session stream to notify on).
    """
    identity = Identity(runtime, actor=actor, local_handle=local_handle, api_key=api_key)
    surface = Surface(runtime, identity)
    auth: dict[str, Any] = {}
    if actor is None and local_handle is None and api_key is None:
        auth = {
            "token_verifier": ActorTokenVerifier(runtime),
            "auth": auth_settings(runtime.settings),
        }
    mcp = TaskflowMCP(
        "taskflow",
        generated=OperationTools(list(REGISTRY.values()), surface),
        toolsets=toolsets.parse(toolset_names),
        local_mode=local_handle is not None,
        subscriptions=Subscriptions(runtime) if subscribe else None,
        title="TaskFlow",
        version=_version(),
        instructions=INSTRUCTIONS,
        log_level=log_level,
        **auth,
    )
    resources.register(mcp, surface)
    return mcp

"""The TaskFlow MCP server: every core operation as a lean, annotated tool.

`build_mcp` wires the tools to one runtime and one way of knowing the caller:
- `actor=`: a fixed identity resolved at startup (stdio, in-process tests);
- `local_handle=`: a single-user installation; requests without a token act as that user,
  and a bearer token, when sent, is still honoured;
- neither: Streamable HTTP with bearer auth through the core `Authenticator` (API keys and
  Better Auth JWTs), RFC 9728 metadata pointing at the auth server.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings

from taskflow.core.actor import Actor
from taskflow.core.config import Settings
from taskflow.core.runtime import Runtime
from taskflow.mcp_server import resources, tools_audit, tools_people, tools_tasks, tools_workflow
from taskflow.mcp_server.identity import ActorTokenVerifier, Identity
from taskflow.mcp_server.toolkit import Surface

INSTRUCTIONS = """\
TaskFlow tracks tasks for humans and AI agents alike; every change is audited under your handle.
Start with whoami, then list_tasks (your tasks) or claim_next_task to pick up work.
Work a task: start_task, update_progress, then request_review (or complete_task).
Changes answer with the task's new version. Pass the version you last read as expected_version
and a change is refused if someone else changed the task since (re-read, then decide again).
Pass any unique idempotency_key on a change: a retry with the same key returns the first answer
and changes nothing again.
An error result says what to do next: read it before retrying."""

# The order of tools/list: everyday tools first, in the order an agent meets them; the grouped
# tools for rarer changes last.
TOOL_ORDER = (
    "whoami",
    "list_projects",
    "list_workers",
    "list_tasks",
    "get_task",
    "create_task",
    "update_task",
    "start_task",
    "update_progress",
    "request_review",
    "approve_task",
    "reject_task",
    "complete_task",
    "assign_task",
    "delegate_task",
    "block_task",
    "unblock_task",
    "claim_next_task",
    "get_audit_trail",
    "verify_audit",
    "manage_task",
    "manage_project",
    "manage_agents",
)

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


def build_mcp(
    runtime: Runtime,
    *,
    local_handle: str | None = None,
    actor: Actor | None = None,
    log_level: LogLevel = "INFO",
) -> MCPServer:
    """An MCP server over `runtime`; see the module docstring for the identity modes."""
    surface = Surface(runtime, Identity(runtime, actor=actor, local_handle=local_handle))
    built = {
        tool.name: tool
        for tool in (
            *tools_people.build(surface),
            *tools_tasks.build(surface),
            *tools_workflow.build(surface),
            *tools_audit.build(surface),
        )
    }
    assert set(built) == set(TOOL_ORDER), set(built) ^ set(TOOL_ORDER)
    tools = [built[name] for name in TOOL_ORDER]
    auth: dict[str, Any] = {}
    if actor is None and local_handle is None:
        auth = {
            "token_verifier": ActorTokenVerifier(runtime),
            "auth": auth_settings(runtime.settings),
        }
    mcp = MCPServer(
        "taskflow",
        title="TaskFlow",
        version=_version(),
        instructions=INSTRUCTIONS,
        tools=tools,
        log_level=log_level,
        **auth,
    )
    resources.register(mcp, surface)
    return mcp

"""`taskflow-mcp`: the MCP server over stdio, for Claude Desktop, Claude Code and other local hosts.

The caller is decided at startup: the agent whose API key is in TASKFLOW_API_KEY (checked again
on later calls, so a revoked key ends the session within a second), or, in local mode (no
AUTH_SERVER_URL), the local user named by `--as @handle`. The database comes from the
settings: DATABASE_URL, or the embedded PostgreSQL by default. stdout is the JSON-RPC channel,
so nothing else may write to it: startup output (the embedded server, migrations) goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from sqlalchemy.exc import DBAPIError

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import resolve_actor
from taskflow.core.bootstrap import open_runtime
from taskflow.core.config import Settings, get_settings
from taskflow.core.domain import Via, check_handle
from taskflow.core.errors import TaskFlowError, Unauthenticated
from taskflow.core.runtime import Runtime
from taskflow.mcp_server import toolsets
from taskflow.mcp_server.server import build_mcp


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr, so child processes started meanwhile inherit that."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


NO_IDENTITY = (
    "no identity: set TASKFLOW_API_KEY to an agent's API key (`taskflow agent register`), "
    "or in local mode pass --as @handle"
)
LOCAL_ONLY = (
    "--as works only in local mode (no AUTH_SERVER_URL): set TASKFLOW_API_KEY to an "
    "agent's API key instead"
)


async def startup_actor(runtime: Runtime, api_key: str | None, handle: str | None) -> Actor:
    """Who this stdio server acts as, decided once (through the core's one resolver)."""
    if api_key and handle:
        raise Unauthenticated("give TASKFLOW_API_KEY or --as, not both")
    if handle and not runtime.local_mode:
        raise Unauthenticated(LOCAL_ONLY)
    return await resolve_actor(
        runtime.auth,
        Via.MCP,
        token=api_key.strip() if api_key else None,
        local_handle=check_handle(handle) if handle else None,
        missing=NO_IDENTITY,
    )


async def serve(settings: Settings, handle: str | None, toolset_names: str | None) -> None:
    with stdout_to_stderr():
        runtime = await open_runtime(settings, limited=True)
    try:
        api_key = settings.taskflow_api_key.strip() if settings.taskflow_api_key else None
        actor = await startup_actor(runtime, api_key, handle)
        mcp = build_mcp(
            runtime,
            actor=actor,
            api_key=api_key if actor.auth == "api_key" else None,
            log_level="WARNING",
            toolset_names=toolset_names,
            subscribe=True,
        )
        await mcp.run_stdio_async()
    finally:
        await runtime.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taskflow-mcp",
        description="TaskFlow MCP server over stdio. Identity: TASKFLOW_API_KEY, or --as in "
        "local mode. Database: DATABASE_URL, or the embedded PostgreSQL.",
    )
    parser.add_argument(
        "--as", dest="handle", metavar="@HANDLE", help="local mode: act as this local user"
    )
    parser.add_argument(
        "--toolsets",
        default=os.environ.get(toolsets.ENV),
        metavar="NAMES",
        help="comma-separated toolsets to offer (all = every one; default: all but admin)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`taskflow-mcp`)."""
    args = parse_args(argv)
    try:
        toolsets.parse(args.toolsets)  # an unknown name fails here, before anything starts
        anyio.run(serve, get_settings(), args.handle, args.toolsets)
    except TaskFlowError as exc:
        print(f"taskflow-mcp: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (OSError, DBAPIError) as exc:  # opening and migrating happen before any transaction
        print(f"taskflow-mcp: database unavailable: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""The composition root: one ASGI app serving the REST API and the MCP endpoint, one lifespan.

This module sits outside the surfaces so that they never import each other: it imports both
and wires them together. `taskflow serve` runs `uvicorn --factory taskflow.server:factory`,
which reads the settings from the environment (`.env.example` lists them). With
`TASKFLOW_LOCAL_USER` set (`serve --no-auth`), requests without a token act as that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from taskflow.core import bootstrap, housekeeping
from taskflow.core.config import get_settings
from taskflow.core.runtime import Runtime
from taskflow.http.app import create_api

log = logging.getLogger("taskflow.server")

LOCAL_USER_ENV = "TASKFLOW_LOCAL_USER"
MCP_PATHS = ("/mcp", "/mcp/{rest:path}", "/.well-known/{rest:path}")

LifespanFactory = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


def _mcp_parts(
    runtime: Runtime, local_handle: str | None
) -> tuple[list[BaseRoute], LifespanFactory | None]:
    """The MCP app's routes and lifespan, or nothing while the MCP surface is not installed."""
    if importlib.util.find_spec("taskflow.mcp_server.http") is None:
        log.warning("taskflow.mcp_server.http not found: serving the REST API without /mcp")
        return [], None
    from taskflow.mcp_server.http import mcp_asgi  # type: ignore[import-not-found]
    from taskflow.mcp_server.server import build_mcp  # type: ignore[import-not-found]

    mcp = build_mcp(runtime, local_handle=local_handle)
    mcp_app, lifespan_factory = mcp_asgi(runtime, mcp)
    # Routes (not a catch-all Mount) so unknown REST paths and wrong methods keep their
    # problem+json 404/405 instead of falling through to the MCP app.
    return [Route(path, mcp_app) for path in MCP_PATHS], lifespan_factory


def _enter(factory: LifespanFactory, app: Starlette) -> contextlib.AbstractAsyncContextManager[Any]:
    """Call a lifespan factory whether it wants the app (Starlette style) or nothing."""
    params = [
        p
        for p in inspect.signature(factory).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return factory(app) if params else factory()


def _build(runtime: Runtime, local_handle: str | None, *, owns_runtime: bool) -> Starlette:
    routes, mcp_lifespan = _mcp_parts(runtime, local_handle)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if owns_runtime:
                stack.push_async_callback(runtime.close)
                await bootstrap.prepare(runtime)
            if mcp_lifespan is not None:
                await stack.enter_async_context(_enter(mcp_lifespan, app))
            if owns_runtime:  # the served process (not an app a test embeds)
                every = runtime.settings.taskflow_lease_sweep_seconds
                if every > 0:
                    sweeper = asyncio.create_task(housekeeping.sweep_forever(runtime.db, every))
                    stack.callback(sweeper.cancel)
                settle_startup_objects()
            yield

    return create_api(runtime, local_handle=local_handle, extra_routes=routes, lifespan=lifespan)


def settle_startup_objects() -> None:
    """Move what startup made (modules, schemas, the app) out of the garbage collector's view.

    A full collection walks every tracked object; after startup that is ~150,000 of them that
    live as long as the process, and each full collection paused a request for ~50 ms (the
    p99 under load). Frozen, they are never walked again: collections find only what requests
    allocate (pauses of ~2 ms).
    """
    gc.collect()
    gc.freeze()


def create_server_app(runtime: Runtime, *, local_handle: str | None = None) -> Starlette:
    """REST (/api, /health, /openapi.json) and MCP (/mcp) over one runtime the caller owns."""
    return _build(runtime, local_handle, owns_runtime=False)


def plain_logging() -> None:
    """Plain stderr logging for the server process, set before the MCP server is built.

    Otherwise the MCP SDK installs Rich with rich tracebacks on the root logger, and rendering
    one traceback blocks the event loop for about a second (the former fault bench saw every request
    stall while a burst of errors was logged).
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def factory() -> Starlette:
    """`uvicorn --factory taskflow.server:factory`: settings and local user from the environment."""
    plain_logging()
    runtime = bootstrap.build_runtime(get_settings())  # connects and migrates in the lifespan
    local_handle = os.environ.get(LOCAL_USER_ENV) or None
    return _build(runtime, local_handle, owns_runtime=True)

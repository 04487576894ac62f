"""A real uvicorn server for the MCP app, in the test's own event loop.

The runtime's database connections belong to the loop that opened them, so the server runs as a
task in the test's loop rather than in a thread. The socket is bound first, so the public URL
(which the RFC 9728 metadata names) is known before the app is built.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from taskflow.core.auth.identity import Authenticator
from taskflow.core.auth.jwt import JwtVerifier
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.http import mcp_asgi
from taskflow.mcp_server.server import build_mcp


def mcp_test_app(runtime: Runtime, *, local_handle: str | None = None) -> Starlette:
    """The composition the product's `taskflow/server.py` does: a parent app, MCP mounted last.

    Test-only, so these tests do not depend on the REST surface being finished.
    """
    mcp = build_mcp(runtime, local_handle=local_handle, log_level="WARNING")
    app, lifespan = mcp_asgi(runtime, mcp)

    @asynccontextmanager
    async def parent_lifespan(_: Starlette) -> AsyncIterator[None]:
        async with lifespan():
            yield

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/health", health), Mount("/", app=app)], lifespan=parent_lifespan
    )


def runtime_for(db: Database, settings: Settings) -> Runtime:
    verifier = JwtVerifier.from_settings(settings) if settings.jwks_url else None
    return Runtime(settings=settings, db=db, auth=Authenticator(db, verifier))


@asynccontextmanager
async def serving(build: Callable[[str], Any]) -> AsyncIterator[str]:
    """Serve `build(base_url)` on a free loopback port; yield the base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then (else
    # every response waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(build(base), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises the startup error
        assert server.started, "uvicorn did not start"
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()

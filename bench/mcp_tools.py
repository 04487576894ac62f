"""MCP tool calls per second over Streamable HTTP: create_task vs a no-op tool vs REST.

All three run against one uvicorn server in one process, in the same run: the no-op tool shows
what the MCP transport, SDK and bearer auth cost per call; create_task adds one real database
transaction with its audit entry; the REST endpoint does the same work as create_task (when
the REST surface is installed) without MCP's JSON-RPC envelope.

    uv run python bench/mcp_tools.py                 # small default run
    uv run python bench/mcp_tools.py -n 1000 --rounds 5

Uses DATABASE_URL if set (it creates a fresh database on that server), else a throwaway
embedded PostgreSQL. Prints a table and writes JSON to bench/results/ (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database, to_async_url, upgrade
from taskflow.core.domain import Role, WorkerType
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import AddMember, CreateHuman, CreateProject, RegisterAgent
from taskflow.core.services import projects, workers
from taskflow.mcp_server.http import mcp_asgi
from taskflow.mcp_server.server import build_mcp
from taskflow.mcp_server.toolkit import READ_ONLY

RESULTS = Path(__file__).parent / "results"
REST_CREATE = "/api/projects/{project}/tasks"


class Pong(BaseModel):
    ok: bool


def add_noop(mcp: MCPServer) -> None:
    """A tool that does nothing: no identity lookup, no database, one tiny structured answer."""

    async def noop() -> Pong:
        return Pong(ok=True)

    mcp.add_tool(noop, name="noop", description="Does nothing (benchmark).", annotations=READ_ONLY)


def build_app(runtime: Runtime) -> tuple[Starlette, bool]:
    """MCP (with the no-op tool) and, if installed, the REST API: one app, one lifespan."""
    mcp = build_mcp(runtime, log_level="WARNING")
    add_noop(mcp)
    mcp_app, mcp_lifespan = mcp_asgi(runtime, mcp)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with mcp_lifespan():
            yield

    try:
        from taskflow.http.app import create_api
    except ImportError:
        return Starlette(routes=[Mount("/", app=mcp_app)], lifespan=lifespan), False
    paths = ("/mcp", "/.well-known/{rest:path}")
    extra: list[BaseRoute] = [Route(path, mcp_app) for path in paths]
    return create_api(runtime, extra_routes=extra, lifespan=lifespan), True


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[str]:
    """A fresh, migrated database: on DATABASE_URL's server, or on a throwaway embedded one."""
    tmp: Path | None = None
    server: Any = None
    if url is None:
        import pgserver

        tmp = Path(tempfile.mkdtemp(prefix="tf-bench-"))
        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="stop")
        url = server.get_uri()
    assert url is not None
    name = f"tf_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = to_async_url(url).set(drivername="postgresql", database="postgres")
    admin = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
    await admin.execute(f"CREATE DATABASE {name}")
    bench_url = to_async_url(url).set(database=name).render_as_string(hide_password=False)
    try:
        yield bench_url
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
        if server is not None:
            server.cleanup()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


async def seed(db: Database) -> str:
    """An owner, the default project, and an agent member; returns the agent's API key."""
    owner = await workers.create_human(db, CreateHuman(handle="@owner", name="Owner"))
    actor = Actor(worker_id=owner.id, handle=owner.handle, type=WorkerType.HUMAN)
    await projects.create_project(db, actor, CreateProject(slug="default", name="Default"))
    issued = await workers.register_agent(db, actor, RegisterAgent(handle="@bench", name="Bench"))
    await projects.add_member(db, actor, "default", AddMember(handle="@bench", role=Role.MEMBER))
    return issued.api_key


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then (else every
    # response waits ~40 ms for a delayed ACK and the bench measures that).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def rate(n: int, warmup: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Calls per second of `n` sequential calls, after `warmup` unmeasured ones."""
    for i in range(warmup):
        await one(i)
    start = time.perf_counter()
    for i in range(n):
        await one(i)
    return n / (time.perf_counter() - start)


def jsonrpc_call(tool: str, arguments: dict[str, Any], i: int) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}


async def measure(base: str, key: str, rest: bool, n: int, warmup: int) -> dict[str, float]:
    """One round of every series, each on one warm connection.

    "sdk" series use the official Python MCP client (its own CPU, including validating each
    answer against the output schema, counts: client and server share this process); "raw"
    series POST the same JSON-RPC with plain httpx, like the REST series, so the MCP-vs-REST
    ratio compares servers, not client libraries.
    """
    auth = {"Authorization": f"Bearer {key}"}
    out: dict[str, float] = {}
    async with (
        httpx2.AsyncClient(headers=auth, timeout=60) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp,
    ):

        async def sdk_noop(_: int) -> None:
            assert not (await mcp.call_tool("noop", {})).is_error

        async def sdk_create(i: int) -> None:
            result = await mcp.call_tool("create_task", {"title": f"sdk {i}"})
            assert not result.is_error, result.content

        out["mcp noop (sdk)"] = await rate(n, warmup, sdk_noop)
        out["mcp create (sdk)"] = await rate(n, warmup, sdk_create)
    raw_headers = {**auth, "Accept": "application/json, text/event-stream"}
    raw_headers["MCP-Protocol-Version"] = "2025-11-25"
    async with httpx.AsyncClient(base_url=base, headers=raw_headers, timeout=60) as client:

        def raw(tool: str, arguments: Callable[[int], dict[str, Any]]) -> Callable[..., Any]:
            async def one(i: int) -> None:
                response = await client.post("/mcp", json=jsonrpc_call(tool, arguments(i), i))
                assert response.status_code == 200, response.text
                assert not response.json()["result"].get("isError"), response.text

            return one

        out["mcp noop (raw)"] = await rate(n, warmup, raw("noop", lambda i: {}))
        create = raw("create_task", lambda i: {"title": f"raw {i}"})
        out["mcp create (raw)"] = await rate(n, warmup, create)
        if rest:

            async def post(i: int) -> None:
                response = await client.post(
                    REST_CREATE.format(project="default"), json={"title": f"rest {i}"}
                )
                assert response.status_code == 201, response.text

            out["rest create (raw)"] = await rate(n, warmup, post)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with database(args.database_url) as url:
        db = Database.from_url(url, pool_size=10)
        try:
            await upgrade(db)
            key = await seed(db)
            settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
            runtime = Runtime(settings=settings, db=db, auth=Authenticator(db, None))
            app, rest = build_app(runtime)
            rounds: list[dict[str, float]] = []
            async with serving(app) as base:
                for _ in range(args.rounds):
                    rounds.append(await measure(base, key, rest, args.n, args.warmup))
        finally:
            await db.close()
    series = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    return {
        "when": datetime.now(UTC).isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "n": args.n,
        "rounds": args.rounds,
        "calls_per_second": series,
        "all_rounds": rounds,
        "rest_installed": rest,
        "database": "DATABASE_URL" if args.database_url else "embedded (throwaway)",
    }


def table(result: dict[str, Any]) -> str:
    series = result["calls_per_second"]
    lines = [f"{'series':<20}{'calls/s':>10}{'ms/call':>10}"]
    for name, value in series.items():
        lines.append(f"{name:<20}{value:>10.1f}{1000 / value:>10.2f}")
    for kind in ("sdk", "raw"):
        ratio = series[f"mcp create ({kind})"] / series[f"mcp noop ({kind})"]
        lines.append(f"create_task / noop ({kind}): {ratio:.2f}")
    if "rest create (raw)" in series:
        ratio = series["mcp create (raw)"] / series["rest create (raw)"]
        lines.append(f"mcp create_task / rest create_task (both raw httpx): {ratio:.2f}")
    else:
        lines.append("REST surface not installed: no REST comparison in this run")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="calls per series per round")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured calls first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--database-url", default=None, help="server for a fresh bench database")
    args = parser.parse_args()
    if args.database_url is None:
        args.database_url = Settings().database_url  # DATABASE_URL from the environment
    result = asyncio.run(run(args))
    print(table(result))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"mcp_tools-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()

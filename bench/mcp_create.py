"""MCP `create_task` vs the same server's `whoami`, over stateless Streamable HTTP.

One uvicorn server (the app `taskflow serve` runs, one worker), MCP at `/mcp` (stateless, JSON
responses: no session, so every POST is a whole `tools/call`). `wrk -t1 -c16` POSTs the
JSON-RPC request with an agent API key, alternating rounds between `whoami` (authentication and
one read: the floor of any tool call) and `create_task` (the task INSERT and its audit entry in
one transaction); the protocol's `ping` runs too, for the transport's own cost. Each call is
checked once beforehand to answer a result, not an error. Target (issue 12): create_task /
whoami >= 0.7.

    uv run python bench/mcp_create.py                  # 5 rounds of 10 s per side
    uv run python bench/mcp_create.py --quick          # seconds (CI)
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    NEVER_LIMITED,
    WRK_HEADER,
    Side,
    alternate,
    median,
    parser,
    print_table,
    quick,
    ratio_line,
    require_wrk,
    round_ratios,
    seed,
    write_result,
    wrk,
    wrk_script,
    wrk_summary,
)
from tests.support.servers import fresh_database, postgres, serve

TARGET = 0.7
PROTOCOL_VERSION = "2025-06-18"


def rpc(method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def tool(name: str, arguments: dict[str, Any]) -> str:
    return rpc("tools/call", {"name": name, "arguments": arguments})


def check_answers(url: str, headers: dict[str, str], body: str) -> None:
    """The request wrk repeats answers a JSON-RPC result (not an error, not isError)."""
    answer = httpx.post(url, content=body, headers=headers, timeout=30)
    answer.raise_for_status()
    message = answer.json()
    if "error" in message or message.get("result", {}).get("isError"):
        raise RuntimeError(f"{body} answered {message}")


def main(argv: list[str] | None = None) -> int:
    args = quick(parser(__doc__, duration=10.0, rounds=5).parse_args(argv))
    require_wrk()
    calls = {
        "ping": rpc("ping"),
        "whoami": tool("whoami", {}),
        "create_task": tool("create_task", {"project": "bench", "title": "bench task"}),
    }
    with (
        postgres(args.database_url) as (server_url, _),
        fresh_database(server_url, "tf_mcp") as url,
    ):
        s = asyncio.run(seed(url))
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
            "Authorization": f"Bearer {s.api_key}",
        }
        with serve("taskflow", url, NEVER_LIMITED) as tf:
            endpoint = tf.base_url + "/mcp"
            sides = []
            for name, body in calls.items():
                check_answers(endpoint, headers, body)
                script = wrk_script("POST", headers, body)
                sides.append(
                    Side(name, lambda d, n=name, sc=script: wrk(n, endpoint, sc, seconds=d))
                )
            runs = alternate(sides, args.rounds, args.duration)
    rows, rounds = wrk_summary(runs)
    print_table("MCP tools/call over stateless Streamable HTTP, wrk -t1 -c16", WRK_HEADER, rows)
    ratios = round_ratios(runs, "create_task", "whoami")
    ratio = median(ratios)
    ratio_line("create_task / whoami", ratio, f"target >= {TARGET}")
    write_result(
        "mcp_create",
        args,
        {"ratio": ratio, "target": TARGET, "round_ratios": ratios, "rounds": rounds},
    )
    return 0 if sum(r[-1] for r in rows) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Console-script style stdio entry point (what `taskflow-mcp` = taskflow.mcp_server.stdio:main would do).
Run by p3_stdio.py as a subprocess. Never print() to stdout here: stdout is the JSON-RPC channel."""

from __future__ import annotations

import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from server_def import build_server  # noqa: E402


def main() -> None:
    # Identity on stdio: no HTTP request, so resolve the API key from env/args at startup
    # (e.g. TASKFLOW_API_KEY) and close over it when building the server.
    mcp = build_server(log_level="WARNING")
    mcp.run("stdio")  # == anyio.run(mcp.run_stdio_async)


if __name__ == "__main__":
    main()

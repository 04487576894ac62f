"""Toolsets: which groups of generated tools a client is offered.

Every declared operation names its toolset. A client sees the default toolsets unless it asks
for others: `taskflow-mcp --toolsets core,admin` (or `TASKFLOW_MCP_TOOLSETS`) over stdio, and
`?toolsets=core,admin` on the `/mcp` URL (or an `X-MCP-Toolsets` header) over HTTP; `all`
means every toolset. The groups, by name (an operation's declaration names its toolset, so a
new toolset joins the default set unless it is listed in `OPT_IN` here):
- `core`: the few everyday task tools (whoami, create, get, list, update a task), under
  10,000 bytes of tools/list (`tests/mcp/test_toolsets.py`);
- `workflow`: the verbs that move a task, claiming, subtasks;
- `directory`: projects, their members, workers (to assign and delegate);
- `audit`, `admin`, `board`, `coordination`, `feed`, `hooks` (opt-in): the trail and its
  verification; project and agent administration; `board`'s move_task, which repeats the verbs
  by status name; dependencies between tasks and the lease heartbeat (update_progress renews a
  lease too); comments and list_changes; a project's webhooks. They are left out by default
  so an agent's context is not spent on them, and stay one word away.
A read-only API key is offered only the read-only tools of its toolsets (`server.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

from taskflow.core.declarations import REGISTRY
from taskflow.core.errors import ValidationFailed

ALL = "all"
OPT_IN = frozenset({"admin", "audit", "board", "coordination", "feed", "hooks"})
QUERY_PARAMETER = "toolsets"
HEADER = "x-mcp-toolsets"
ENV = "TASKFLOW_MCP_TOOLSETS"


@cache
def known() -> frozenset[str]:
    """Every toolset some operation declares (read once: a request's toolsets are parsed on
    every tools/call, and the declarations do not change while the process runs)."""
    return frozenset(op.toolset for op in REGISTRY.values() if op.mcp is not None)


@cache
def default() -> frozenset[str]:
    return known() - OPT_IN


def parse(value: str | Iterable[str] | None) -> frozenset[str]:
    """`core,admin` (or a list of names) as a set of toolsets; None or empty means the default.

    An unknown name is refused with the names there are, rather than quietly offering less.
    """
    if value is None:
        return default()
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen = {n.strip() for n in names if n.strip()}
    if not chosen:
        return default()
    if ALL in chosen:
        return known()
    unknown = chosen - known()
    if unknown:
        listed = ", ".join(sorted(known() | {ALL}))
        raise ValidationFailed(
            f"unknown toolset {', '.join(sorted(unknown))}: choose from {listed}",
            field="toolsets",
        )
    return frozenset(chosen)


def from_request(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The toolsets an HTTP client asked for, from the URL or the header."""
    return query.get(QUERY_PARAMETER) or headers.get(HEADER)

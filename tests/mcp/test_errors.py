"""Errors an agent can act on: isError results with one clear message, never a crash."""

from __future__ import annotations

import pytest

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.domain import TaskStatus, Via, WorkerType, check_transition
from taskflow.core.errors import InvalidTransition
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.errors import META_KEY, for_agents
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team, call, refusal, settings_for


async def test_database_down_is_an_error_result(db_url: str) -> None:
    dead = Database.from_url("postgresql+asyncpg://nobody@127.0.0.1:1/nothing")
    runtime = Runtime(settings_for(db_url), dead, Authenticator(dead, None))
    someone = Actor(worker_id=1, handle="@sarah", type=WorkerType.HUMAN, via=Via.MCP)
    user = McpUser(build_mcp(runtime, actor=someone, log_level="WARNING"))
    try:
        result = await user.call("create_task", title="x")
        listed = await user.call("list_tasks")
    finally:
        await dead.close()
    for outcome in (result, listed):
        message = refusal(outcome)
        assert message.startswith("the database is unavailable")
        assert outcome.meta[META_KEY]["code"] == "unavailable"  # type: ignore[index]
        assert "cause" not in outcome.meta[META_KEY]  # type: ignore[index]  # driver text stays in the log


async def test_errors_carry_a_machine_readable_code(bot: McpUser, team: Team) -> None:
    result = await call(bot, "get_task", task_id=12345)
    assert result.is_error and result.structured_content is None
    assert result.meta[META_KEY] == {"code": "not-found", "status": 404, "entity": "task"}  # type: ignore[index]


async def test_unknown_tools_and_bad_arguments_are_error_results(bot: McpUser, team: Team) -> None:
    assert refusal(await call(bot, "no_such_tool")) == "Unknown tool: no_such_tool"
    bad = refusal(await call(bot, "get_task", task_id="forty-two"))
    assert bad.startswith("invalid input: task_id: Input should be a valid integer")
    nested = refusal(await call(bot, "create_task", title="x", subtasks=[{"title": ""}]))
    assert nested.startswith("invalid input: subtasks.0.title")
    assert "forty-two" not in bad  # the value is not echoed back


@pytest.mark.parametrize(
    ("core", "agent"),
    [
        (
            "task 4 is pending: progress needs in_progress (call start first)",
            "task 4 is pending: progress needs in_progress (call start_task first)",
        ),
        (
            "task 4 is review: progress needs in_progress (start it again)",
            "task 4 is review: progress needs in_progress (call start_task again)",
        ),
        (
            "task 4 is in_progress, not in review: request_review first",
            "task 4 is in_progress, not in review: call request_review first",
        ),
        (
            "list your projects (list_projects / `taskflow project list`) or ask",
            "list your projects (list_projects) or ask",
        ),
        (
            "create a new key with a new expiry instead (create_api_key)",
            "create a new key with a new expiry instead (create_api_key)",
        ),
        (
            "Ask for a new key (`taskflow agent rotate` or POST /api/x/{handle}/keys)",
            "Ask for a new key (rotate_api_key)",
        ),
        (
            "task 4 is completed: progress needs in_progress (reopen it with request_review, "
            "then start it)",
            "task 4 is completed: progress needs in_progress (reopen it with request_review, "
            "then call start_task)",
        ),
        ("the start of something: started", "the start of something: started"),
    ],
)
def test_core_verbs_become_tool_names(core: str, agent: str) -> None:
    assert for_agents(core) == agent


def test_every_transition_refusal_names_real_tools() -> None:
    for current in TaskStatus:
        for target in TaskStatus:
            try:
                check_transition(7, current, target)
            except InvalidTransition as exc:
                message = for_agents(exc.message)
                for verb in ("(start)", "(complete)", "(block)", "(unblock)"):
                    assert verb not in message, message


async def test_non_ascii_digits_are_refused_not_a_crash(bot: McpUser, team: Team) -> None:
    """ "²".isdigit() is True but int("²") fails: such a project reference once crashed the call."""
    for name, args in (
        ("list_tasks", {"project": "²"}),
        ("create_task", {"title": "x", "project": "²"}),
        ("get_audit_trail", {"project": "²"}),
    ):
        message = refusal(await call(bot, name, **args))
        assert "not found" in message, (name, message)

"""Errors an agent can act on: isError results with one clear message, never a crash."""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import InvalidTransition, NextStep, NotFound
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.errors import META_KEY, for_agents
from taskflow.mcp_server.server import build_mcp
from tests.mcp.conftest import McpUser, Team, call, ok, refusal, settings_for


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
    assert refusal(await call(bot, "no_such_tool")).startswith("Unknown tool: no_such_tool")
    bad = refusal(await call(bot, "get_task", task_id="forty-two"))
    assert bad.startswith("invalid input: task_id: Input should be a valid integer")
    nested = refusal(await call(bot, "create_task", title="x", subtasks=[{"title": ""}]))
    assert nested.startswith("invalid input: subtasks.0.title")
    assert "forty-two" not in bad  # the value is not echoed back


def test_the_next_step_is_rendered_as_the_tool_to_call() -> None:
    refused = InvalidTransition(
        "task 8 is pending: it cannot move to completed. From pending it can move to: "
        "in_progress, blocked.",
        next_step=NextStep("start", {"task_id": 8}),
        allowed=["start", "block"],
    )
    assert for_agents(refused) == (
        "task 8 is pending: it cannot move to completed. From pending it can move to: "
        "in_progress, blocked. Next: call start_task(task_id=8). Allowed: start_task, block_task."
    )
    plain = NotFound("no worker @x: list the workers to find their handles")
    assert for_agents(plain) == plain.message


async def test_a_refused_move_names_the_tools_that_are_allowed(
    bot: McpUser, db: Database, team: Team
) -> None:
    created = ok(await call(bot, "create_task", title="Not started", project="default"))
    task_id = created["task"]["id"] if "task" in created else created["id"]
    message = refusal(await call(bot, "complete_task", task_id=task_id))
    assert f"Next: call start_task(task_id={task_id})." in message
    assert "Allowed: start_task, block_task." in message
    for core_word in ("(start)", "(complete)", "(block)", "(unblock)"):
        assert core_word not in message


async def test_non_ascii_digits_are_refused_not_a_crash(bot: McpUser, team: Team) -> None:
    """ "²".isdigit() is True but int("²") fails: such a project reference once crashed the call."""
    for name, args in (
        ("list_tasks", {"project": "²"}),
        ("create_task", {"title": "x", "project": "²"}),
        ("get_audit_trail", {"project": "²"}),
    ):
        message = refusal(await call(bot, name, **args))
        assert "not found" in message, (name, message)

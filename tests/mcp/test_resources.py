"""Resources: a task with its subtree, a project's audit trail; refusals are protocol errors."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError

from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.mcp.conftest import McpUser, Team


async def test_task_resource_has_the_subtree(bot: McpUser, db: Database, team: Team) -> None:
    made = await tasks.create_task(db, team.bot, CreateTask(title="P", subtasks=[{"title": "c"}]))
    body = json.loads(await bot.read(f"taskflow://tasks/{made.task.id}"))
    assert body["task"]["title"] == "P"
    assert [n["title"] for n in body["subtree"]] == ["c"]


async def test_task_resource_pages_the_subtree(bot: McpUser, db: Database, team: Team) -> None:
    made = await tasks.create_task(
        db, team.bot, CreateTask(title="P", subtasks=[{"title": t} for t in "abc"])
    )
    uri = f"taskflow://tasks/{made.task.id}"
    first = json.loads(await bot.read(f"{uri}?limit=2"))
    assert [n["title"] for n in first["subtree"]] == ["a", "b"] and first["next_cursor"]
    rest = json.loads(await bot.read(f"{uri}?limit=2&cursor={first['next_cursor']}"))
    assert [n["title"] for n in rest["subtree"]] == ["c"] and rest["next_cursor"] is None
    assert json.loads(await bot.read(f"{uri}?depth=0"))["subtree"] == []
    for query, says in (
        ("limit=0", "limit: Input should be greater than or equal to 1"),
        ("depth=-2", "depth: Input should be greater than or equal to 0"),
        ("cursor=garbage", "invalid cursor"),
    ):
        with pytest.raises(MCPError) as info:
            await bot.read(f"{uri}?{query}")
        assert says in info.value.error.message, info.value.error.message


@pytest.mark.parametrize("ref", ["999", "abc", "0", "²"])
async def test_unknown_task_is_resource_not_found(bot: McpUser, team: Team, ref: str) -> None:
    with pytest.raises(MCPError) as info:
        await bot.read(f"taskflow://tasks/{ref}")
    assert info.value.error.code == -32602


async def test_project_audit_resource(bot: McpUser, db: Database, team: Team) -> None:
    await tasks.create_task(db, team.bot, CreateTask(title="Audited"))
    body = json.loads(await bot.read("taskflow://projects/default/audit"))
    assert body["items"][0]["action"] == "created"
    assert body["items"][0]["actor"] == "@claude-code"
    with pytest.raises(MCPError) as info:
        await bot.read("taskflow://projects/web/audit")  # not a member: not found, not forbidden
    assert info.value.error.code == -32602
    assert "not a member" in info.value.error.message


async def test_project_resource(bot: McpUser, team: Team) -> None:
    body = json.loads(await bot.read("taskflow://projects/default"))
    assert body["slug"] == "default"
    with pytest.raises(MCPError) as info:
        await bot.read("taskflow://projects/web")  # not a member: not found, not forbidden
    assert info.value.error.code == -32602

"""Comments and list_changes as MCP tools, in-process: an agent and a human talk about a task,
an unknown argument (`comment` instead of `body`) is refused by name, and list_changes answers
what changed since the agent last looked, exactly once."""

from __future__ import annotations

from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.mcp.conftest import (
    McpUser,
    Team,
    assert_audited,
    audit_tail,
    call,
    ok,
    refused_unchanged,
)


async def test_talk_about_a_task_and_read_what_changed(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="Spec"))).task.id
    bookmark = ok(await call(bot, "list_changes", limit=1))["next_after"]

    said = ok(await call(ann, "add_comment", task_id=task_id, body="@claude-code can you draft?"))
    assert (said["author"], said["mentions"]) == ("@ann", ["@claude-code"])
    assert_audited((await audit_tail(db))[0], "commented", "@ann")

    mine = ok(await call(bot, "list_changes", after=bookmark, mine=True))
    assert [e["action"] for e in mine["items"]] == ["commented"]
    assert mine["items"][0]["details"]["body"] == "@claude-code can you draft?"
    again = ok(await call(bot, "list_changes", after=mine["next_after"]))
    assert again["items"] == [] and again["next_after"] == mine["next_after"]

    reply = ok(await call(bot, "add_comment", task_id=task_id, body="On it."))
    ok(await call(bot, "edit_comment", comment_id=reply["id"], body="On it: draft by noon."))
    thread = ok(await call(ann, "list_comments", task_id=task_id))["items"]
    assert [(c["author"], c["body"], c["revision"]) for c in thread] == [
        ("@ann", "@claude-code can you draft?", 1),
        ("@claude-code", "On it: draft by noon.", 2),
    ]

    typo = await refused_unchanged(db, bot, "add_comment", task_id=task_id, comment="hi")
    assert "unknown argument 'comment'" in typo
    others = await refused_unchanged(db, ann, "edit_comment", comment_id=reply["id"], body="x")
    assert "not yours" in others

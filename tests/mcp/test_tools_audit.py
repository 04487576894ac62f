"""Audit tools in-process: the trail by task, project, actor and entry; chain verification."""

from __future__ import annotations

from sqlalchemy import text

from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks, workflow
from tests.mcp.conftest import McpUser, Team, call, ok, refused_unchanged


async def test_audit_trail_filters_and_pages(bot: McpUser, db: Database, team: Team) -> None:
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="T"))).task.id
    await workflow.start(db, team.bot, task_id)
    await workflow.progress(db, team.bot, task_id, 40)

    trail = ok(await call(bot, "get_audit_trail", task_id=task_id))
    assert [e["action"] for e in trail["items"]] == ["progressed", "started", "created"]
    by_bot = ok(await call(bot, "get_audit_trail", actor="@claude-code", project="default"))
    assert {e["action"] for e in by_bot["items"]} == {"progressed", "started"}
    assert {e["actor"] for e in by_bot["items"]} == {"@claude-code"}
    page = ok(await call(bot, "get_audit_trail", task_id=task_id, limit=2))
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = ok(
        await call(bot, "get_audit_trail", task_id=task_id, limit=2, cursor=page["next_cursor"])
    )
    assert [e["action"] for e in rest["items"]] == ["created"]

    entry_id = trail["items"][0]["id"]
    one = ok(await call(bot, "get_audit_entry", entry_id=entry_id))
    assert one["id"] == entry_id and one["action"] == "progressed"
    assert one["actor"] == "@claude-code"


async def test_audit_trail_refusals(bot: McpUser, db: Database, team: Team) -> None:
    assert "no audit entries for task 404" in await refused_unchanged(
        db, bot, "get_audit_trail", task_id=404
    )
    assert "audit entry 99999 not found" in await refused_unchanged(
        db, bot, "get_audit_entry", entry_id=99999
    )
    assert "not found" in await refused_unchanged(db, bot, "get_audit_trail", project="web")


async def test_audit_tools_refuse_unknown_arguments_naming_the_nearest(
    bot: McpUser, db: Database, team: Team
) -> None:
    """The entry is its own tool now: the trail no longer takes entry_id, and a typo is named."""
    assert "did you mean 'task_id'?" in await refused_unchanged(
        db, bot, "get_audit_trail", taskid=1
    )
    assert "unknown argument 'entry_id'" in await refused_unchanged(
        db, bot, "get_audit_trail", entry_id=1
    )
    assert "did you mean 'entry_id'?" in await refused_unchanged(
        db, bot, "get_audit_entry", entry=1
    )
    assert "did you mean 'with_digest'?" in await refused_unchanged(
        db, bot, "verify_audit", with_digests=False
    )


async def test_verify_audit_reports_a_clean_log_and_tampering(
    bot: McpUser, db: Database, team: Team
) -> None:
    clean = ok(await call(bot, "verify_audit"))
    assert clean["ok"] and clean["entries_checked"] > 0 and clean["digest"]
    assert ok(await call(bot, "verify_audit", with_digest=False))["digest"] is None
    async with db.engine.begin() as conn:  # a forger with superuser access to the database
        await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        await conn.execute(
            text(
                "UPDATE audit_log SET actor_handle = '@mallory' "
                "WHERE id = (SELECT min(id) FROM audit_log)"
            )
        )
        await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    tampered = ok(await call(bot, "verify_audit"))
    assert not tampered["ok"] and tampered["problems"]

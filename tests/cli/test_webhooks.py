"""`taskflow webhook ...`: add (secret shown once), list, edit, rotate-secret, deliveries,
delete; a member is refused in one red line; bad input refused, nothing changed."""

from __future__ import annotations

from taskflow.core.db import Database
from tests.cli.conftest import Cli, audit_rows, last_audit_id, snapshot


async def test_webhook_commands(sarah: Cli, db: Database) -> None:
    mark = await last_audit_id(db)
    shown = await sarah.ok("webhook", "add", "https://e.com/hook", "-e", "created", "-d", "ci")
    assert "whsec_" in shown.stdout and "only time it is shown" in shown.stdout
    made = await sarah.json("webhook", "add", "http://127.0.0.1:9/x", "-e", "overdue")
    assert made["secret"].startswith("whsec_") and made["webhook"]["events"] == ["overdue"]
    listed = await sarah.json("webhook", "list")
    assert [h["events"] for h in listed] == [["created"], ["overdue"]]
    table = (await sarah.ok("webhook", "list")).stdout
    assert "https://e.com/hook" in table and "whsec_" not in table
    hook_id = made["webhook"]["id"]
    edited = await sarah.ok("webhook", "edit", str(hook_id), "--disable")
    assert f"Webhook {hook_id} of default: disabled" in edited.stdout
    rotated = await sarah.json("webhook", "rotate-secret", str(hook_id))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    assert rotated["webhook"]["version"] == made["webhook"]["version"] + 2  # the edit, then this
    assert rotated["webhook"]["previous_secret_expires_at"] is not None  # a day by default
    again = await sarah.ok("webhook", "rotate-secret", str(hook_id), "--overlap", "0")
    assert "only time it is shown" in again.stdout and rotated["secret"] not in again.stdout
    assert "The old secret signs nothing more." in again.stdout
    assert (await sarah.json("webhook", "deliveries", str(hook_id))) == []
    assert "Deliveries of webhook" in (await sarah.ok("webhook", "deliveries", str(hook_id))).stdout
    await sarah.ok("webhook", "delete", str(hook_id))
    entries = [(e["action"], e["actor_handle"], e["via"]) for e in await audit_rows(db, mark)]
    assert entries == [
        ("webhook_created", "@sarah", "cli"),
        ("webhook_created", "@sarah", "cli"),
        ("webhook_updated", "@sarah", "cli"),
        ("webhook_updated", "@sarah", "cli"),
        ("webhook_updated", "@sarah", "cli"),
        ("webhook_deleted", "@sarah", "cli"),
    ]


async def test_member_and_bad_input_are_refused(sarah: Cli, agent_key: str, db: Database) -> None:
    before = await snapshot(db)
    as_agent = {"TASKFLOW_TOKEN": agent_key}
    line = await sarah.refused("webhook", "add", "https://e.com/h", env=as_agent)
    assert "you are a member of project default" in line and "admin" in line
    assert "admin" in await sarah.refused("webhook", "list", env=as_agent)
    line = await sarah.refused("webhook", "add", "ftp://e.com/h")
    assert "url must be an absolute http:// or https:// URL" in line
    line = await sarah.refused("webhook", "add", "https://e.com/h", "-e", "finished")
    assert "unknown event 'finished'" in line
    assert "nothing to change" in await sarah.refused("webhook", "edit", "1", code=2)
    line = await sarah.refused("webhook", "redeliver", "1", "msg_1")
    assert "project default has no webhook 1" in line
    assert await snapshot(db) == before

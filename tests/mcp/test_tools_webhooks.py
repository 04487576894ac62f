"""Webhook tools (toolset `hooks`, opt-in): the owner manages them, a member is refused, bad
input is refused in the tool's words, and the toolset is offered only on request."""

from __future__ import annotations

from taskflow.core.db import Database
from taskflow.mcp_server import toolsets
from tests.mcp.conftest import (
    McpUser,
    assert_audited,
    audit_tail,
    call,
    ok,
    refused_unchanged,
)

TOOLS = {
    "create_webhook",
    "list_webhooks",
    "update_webhook",
    "delete_webhook",
    "list_webhook_deliveries",
    "rotate_webhook_secret",
    "redeliver_webhook_delivery",
}


async def test_hooks_toolset_is_opt_in() -> None:
    assert "hooks" in toolsets.known() and "hooks" not in toolsets.default()
    assert toolsets.parse("hooks") == frozenset({"hooks"})


async def test_owner_manages_hooks_through_mcp(sarah: McpUser, db: Database) -> None:
    made = ok(await call(sarah, "create_webhook", project="default", url="https://e.com/h"))
    assert made["secret"].startswith("whsec_") and made["webhook"]["events"] == ["*"]
    assert_audited((await audit_tail(db))[0], "webhook_created", "@sarah")
    hook_id = made["webhook"]["id"]
    listed = ok(await call(sarah, "list_webhooks", project="default"))["items"]
    assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]
    changed = ok(
        await call(
            sarah, "update_webhook", project="default", webhook_id=hook_id, events=["overdue"]
        )
    )
    assert (changed["events"], changed["version"]) == (["overdue"], 2)
    rotated = ok(await call(sarah, "rotate_webhook_secret", project="default", webhook_id=hook_id))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    assert rotated["webhook"]["version"] == 3
    assert_audited((await audit_tail(db))[0], "webhook_updated", "@sarah")
    # a hook for every event gets its own creation first (a ping); the edit is not `overdue`
    log = ok(await call(sarah, "list_webhook_deliveries", project="default", webhook_id=hook_id))
    assert [(d["event"], d["status"]) for d in log["items"]] == [
        ("webhook.webhook_created", "pending")
    ]
    waiting = log["items"][0]["id"]
    message = await refused_unchanged(
        db,
        sarah,
        "redeliver_webhook_delivery",
        project="default",
        webhook_id=hook_id,
        delivery_id=waiting,
    )
    assert f"delivery {waiting} is still waiting to be sent" in message
    ok(await call(sarah, "delete_webhook", project="default", webhook_id=hook_id))
    assert_audited((await audit_tail(db))[0], "webhook_deleted", "@sarah")


async def test_member_is_refused_and_nothing_changes(
    sarah: McpUser, bot: McpUser, db: Database
) -> None:
    made = ok(await call(sarah, "create_webhook", project="default", url="https://e.com/h"))
    hook_id = made["webhook"]["id"]
    for tool, args in [
        ("create_webhook", {"url": "https://e.com/x"}),
        ("list_webhooks", {}),
        ("update_webhook", {"webhook_id": hook_id, "enabled": False}),
        ("delete_webhook", {"webhook_id": hook_id}),
        ("rotate_webhook_secret", {"webhook_id": hook_id}),
        ("redeliver_webhook_delivery", {"webhook_id": hook_id, "delivery_id": "msg_1"}),
        ("list_webhook_deliveries", {"webhook_id": hook_id}),
    ]:
        message = await refused_unchanged(db, bot, tool, project="default", **args)
        assert "you are a member of project default" in message and "admin" in message, message


async def test_bad_input_is_refused_in_the_tools_words(sarah: McpUser, db: Database) -> None:
    message = await refused_unchanged(
        db, sarah, "create_webhook", project="default", url="ftp://e.com/x"
    )
    assert "url must be an absolute http:// or https:// URL" in message
    message = await refused_unchanged(
        db, sarah, "create_webhook", project="default", url="https://e.com", events=["overdu"]
    )
    assert "unknown event 'overdu': did you mean 'overdue'?" in message

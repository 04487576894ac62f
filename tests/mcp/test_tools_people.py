"""Identity, worker and project tools in-process, and agents managing agents (principle 2)."""

from __future__ import annotations

from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.handlers import workers as worker_ops
from taskflow.core.schemas import AddMember, CreateTask
from taskflow.core.services import projects, tasks
from tests.mcp.conftest import (
    McpUser,
    Team,
    assert_audited,
    audit_count,
    audit_tail,
    call,
    ok,
    refusal,
    refused_unchanged,
)


async def test_whoami(bot: McpUser, sarah: McpUser) -> None:
    me = ok(await call(bot, "whoami"))
    assert (me["handle"], me["type"]) == ("@claude-code", "agent")
    assert (me["email"], me["sso_subject"], me["active"]) == (None, None, True)
    assert ok(await call(sarah, "whoami"))["type"] == "human"


async def test_list_projects_and_members(bot: McpUser, db: Database, team: Team) -> None:
    mine = ok(await call(bot, "list_projects"))
    assert [(p["slug"], p["my_role"]) for p in mine["items"]] == [("default", "member")]
    one = ok(await call(bot, "get_project", project="default"))
    assert one["slug"] == "default"
    members = ok(await call(bot, "list_members", project="default"))["items"]
    assert {m["handle"] for m in members} == {"@sarah", "@ann", "@claude-code"}
    hidden = await refused_unchanged(db, bot, "get_project", project="web")
    assert (
        "not found, or you are not a member" in hidden and "Next: call list_projects()." in hidden
    )


async def test_list_workers_and_get_worker(bot: McpUser, db: Database, team: Team) -> None:
    every = ok(await call(bot, "list_workers"))["items"]
    assert {w["handle"] for w in every} == {"@sarah", "@ann", "@claude-code"}
    agents = ok(await call(bot, "list_workers", type="agent"))["items"]
    humans = ok(await call(bot, "list_workers", type="human"))["items"]
    assert [w["handle"] for w in agents] == ["@claude-code"]
    assert [w["handle"] for w in humans] == ["@ann", "@sarah"]
    assert "type" in await refused_unchanged(db, bot, "list_workers", type="robot")
    one = ok(await call(bot, "get_worker", handle="@ann"))
    assert (one["name"], one["type"]) == ("Ann Lee", "human")
    assert "email" not in one and "sso_subject" not in one
    assert (
        "no worker @ghost: list the workers to find their handles Next: call list_workers()."
        in await refused_unchanged(db, bot, "get_worker", handle="@ghost")
    )
    # `handle=` was list_workers' way to one worker; get_worker is that tool now
    assert "unknown argument 'handle': this operation accepts type" in await refused_unchanged(
        db, bot, "list_workers", handle="@ann"
    )


async def test_project_lifecycle(sarah: McpUser, db: Database, team: Team) -> None:
    created = ok(
        await call(
            sarah,
            "create_project",
            slug="mobile",
            name="Mobile app",
            approval_policy="review_required",
        )
    )
    assert created["slug"] == "mobile" and created["my_role"] == "owner"
    assert_audited((await audit_tail(db))[0], "created", "@sarah")

    stale = await refused_unchanged(
        db, sarah, "update_project", project="mobile", name="X", expected_version=9
    )
    assert "changed since you read it" in stale
    updated = ok(
        await call(
            sarah, "update_project", project="mobile", description="iOS first", expected_version=1
        )
    )
    assert updated["description"] == "iOS first"
    assert updated["name"] == "Mobile app"  # only what was sent changed
    assert_audited((await audit_tail(db))[0], "updated", "@sarah")

    added = ok(await call(sarah, "add_member", project="mobile", handle="@claude-code"))
    assert added["role"] == "member"
    assert_audited((await audit_tail(db))[0], "member_added", "@sarah")
    ok(await call(sarah, "change_role", project="mobile", handle="@claude-code", role="admin"))
    assert_audited((await audit_tail(db))[0], "role_changed", "@sarah")
    removed = ok(await call(sarah, "remove_member", project="mobile", handle="@claude-code"))
    assert removed == {"result": None}
    assert_audited((await audit_tail(db))[0], "member_removed", "@sarah")

    deleted = ok(await call(sarah, "delete_project", project="mobile"))
    assert deleted == {"result": created["id"]}
    assert_audited((await audit_tail(db))[0], "deleted", "@sarah")


async def test_project_refusals(bot: McpUser, sarah: McpUser, db: Database, team: Team) -> None:
    member = await refused_unchanged(db, bot, "update_project", project="default", name="Mine")
    assert "you are a member of project default" in member
    assert "name: Field required" in await refused_unchanged(
        db, sarah, "create_project", slug="newp"
    )
    assert "already exists" in await refused_unchanged(
        db, sarah, "create_project", slug="web", name="Web again"
    )
    stray = await refused_unchanged(db, sarah, "delete_project", project="web", handle="@ann")
    assert "unknown argument 'handle'" in stray
    typo = await refused_unchanged(db, sarah, "update_project", project="web", nmae="x")
    assert "unknown argument 'nmae': did you mean 'name'?" in typo
    assert "role" in await refused_unchanged(
        db, sarah, "change_role", project="default", handle="@ann"
    )
    assert "last owner" in await refused_unchanged(
        db, sarah, "remove_member", project="default", handle="@sarah"
    )


async def test_a_repeated_key_replays_the_first_answer(sarah: McpUser, db: Database) -> None:
    first = await call(sarah, "create_project", slug="once", name="Once", idempotency_key="k1")
    before = await audit_count(db)
    again = await call(sarah, "create_project", slug="once", name="Once", idempotency_key="k1")
    assert ok(again) == ok(first) and (again.meta or {}).get("taskflow/replayed") is True
    assert await audit_count(db) == before


async def test_agents_register_and_manage_agents(bot: McpUser, ann: McpUser, db: Database) -> None:
    issued = ok(
        await call(
            bot,
            "register_agent",
            handle="@helper",
            name="Helper",
            agent_type="claude",
            capabilities=["python"],
        )
    )
    assert issued["api_key"].startswith("tf_") and issued["worker"]["handle"] == "@helper"
    created, registered_entry = await audit_tail(db, 2)
    assert_audited(registered_entry, "agent_registered", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")

    second = ok(await call(bot, "create_api_key", handle="@helper", name="ci"))
    assert second["key"]["name"] == "ci" and second["api_key"] != issued["api_key"]
    keys = ok(await call(bot, "list_api_keys", handle="@helper"))["items"]
    assert [k["name"] for k in keys] == ["default", "ci"]
    assert all("api_key" not in k for k in keys)  # listed keys never show the secret

    revoked = ok(await call(bot, "revoke_api_key", handle="@helper", key_id=keys[1]["id"]))
    assert revoked["id"] == keys[1]["id"] and revoked["revoked_at"] is not None
    assert_audited((await audit_tail(db))[0], "api_key_revoked", "@claude-code")
    rotated = ok(await call(bot, "rotate_api_key", handle="@helper", key_id=keys[0]["id"]))
    assert rotated["api_key"] != issued["api_key"] and rotated["key"]["name"] == "default"
    created, revoked_entry = await audit_tail(db, 2)  # one rotation: revoke and issue, one call
    assert_audited(revoked_entry, "api_key_revoked", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")
    assert created["request_id"] == revoked_entry["request_id"]

    assert "only @helper itself or the worker who registered it" in await refused_unchanged(
        db, ann, "list_api_keys", handle="@helper"
    )
    assert "key_id: Field required" in await refused_unchanged(
        db, bot, "revoke_api_key", handle="@helper"
    )
    assert "already revoked" in await refused_unchanged(
        db, bot, "revoke_api_key", handle="@helper", key_id=keys[1]["id"]
    )
    missing = await call(bot, "revoke_api_key", handle="@helper", key_id=999)
    assert 'Next: call list_api_keys(handle="@helper")' in refusal(missing)
    assert "is taken" in await refused_unchanged(
        db, bot, "register_agent", handle="@ann", name="Not Ann"
    )


async def test_unknown_arguments_name_the_nearest_one(bot: McpUser, db: Database) -> None:
    typo = await refused_unchanged(
        db, bot, "register_agent", handle="@helper", name="H", capability=["py"]
    )
    assert "unknown argument 'capability': did you mean 'capabilities'?" in typo
    stray = await refused_unchanged(db, bot, "create_api_key", handle="@claude-code", expires="x")
    assert "unknown argument 'expires': did you mean 'expires_at'?" in stray
    grouped = await refused_unchanged(db, bot, "deactivate_agent", handle="@claude-code", key_id=1)
    assert "unknown argument 'key_id'" in grouped


async def test_a_replayed_registration_shows_its_key_only_to_the_caller(
    bot: McpUser, ann: McpUser, db: Database
) -> None:
    """The key is answered once: a retry with the same idempotency key replays the stored
    answer (key included) to the worker that asked, and to nobody else."""
    first = await call(bot, "register_agent", handle="@helper", name="H", idempotency_key="r1")
    before = await audit_count(db)
    again = await call(bot, "register_agent", handle="@helper", name="H", idempotency_key="r1")
    assert ok(again) == ok(first) and (again.meta or {}).get("taskflow/replayed") is True
    assert await audit_count(db) == before
    other = await refused_unchanged(
        db, ann, "register_agent", handle="@helper", name="H", idempotency_key="r1"
    )
    assert "is taken" in other and ok(first)["api_key"] not in other


async def test_deactivate_and_reactivate_agent(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    await call(bot, "register_agent", handle="@helper", name="Helper")
    await projects.add_member(db, team.sarah, "default", AddMember(handle="@helper"))
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="T"))).task.id

    assert "only @helper itself or the worker who registered it can deactivate it" in (
        await refused_unchanged(db, ann, "deactivate_agent", handle="@helper")
    )
    assert "no worker @ghost" in await refused_unchanged(
        db, bot, "deactivate_agent", handle="@ghost"
    )
    assert "only agents can be deactivated" in await refused_unchanged(
        db, bot, "deactivate_agent", handle="@ann"
    )
    active = await refused_unchanged(db, bot, "reactivate_agent", handle="@helper")
    assert "is active" in active and 'Next: call create_api_key(handle="@helper")' in active

    off = ok(await call(bot, "deactivate_agent", handle="@helper"))
    assert off["worker"]["active"] is False and off["changed"] is True
    assert len(off["revoked_keys"]) == 1 and off["revoked_keys"][0]["revoked_at"] is not None
    [entry] = await audit_tail(db)
    assert_audited(entry, "agent_deactivated", "@claude-code")
    assert entry["details"]["revoked_keys"][0]["id"] == off["revoked_keys"][0]["id"]
    assert "@helper is deactivated" in await refused_unchanged(
        db, bot, "assign_task", task_id=task_id, assignee="@helper"
    )
    no_key = await call(bot, "create_api_key", handle="@helper")
    assert 'Next: call reactivate_agent(handle="@helper")' in refusal(no_key)
    assert (no_key.meta or {})["taskflow/error"]["next_step"] == {
        "tool": "reactivate_agent",
        "arguments": {"handle": "@helper"},
    }
    before = await audit_count(db)
    again = ok(await call(bot, "deactivate_agent", handle="@helper"))
    assert again["revoked_keys"] == [] and again["changed"] is False
    assert await audit_count(db) == before
    assert ok(await call(ann, "get_worker", handle="@helper"))["active"] is False

    on = ok(await call(bot, "reactivate_agent", handle="@helper", name="back"))
    assert on["worker"]["active"] is True and on["key"]["name"] == "back"
    created, reactivated = await audit_tail(db, 2)
    assert_audited(reactivated, "agent_reactivated", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")
    assigned = ok(await call(bot, "assign_task", task_id=task_id, assignee="@helper"))
    assert assigned["assignee"] == "@helper"


async def test_every_worker_operation_is_a_tool(bot: McpUser, sarah: McpUser) -> None:
    """Each operation of the workers aggregate is its own tool, offered with toolsets=all."""
    listed = {t.name for t in (await bot.tools()).tools}
    declared = {op.mcp for op in REGISTRY.values() if op.handler.__module__ == worker_ops.__name__}
    assert declared == {
        "whoami",
        "list_workers",
        "get_worker",
        "register_agent",
        "create_api_key",
        "list_api_keys",
        "revoke_api_key",
        "rotate_api_key",
        "deactivate_agent",
        "reactivate_agent",
    }
    assert declared <= listed and "manage_agents" not in listed

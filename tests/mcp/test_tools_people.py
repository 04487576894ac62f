"""Identity, worker and project tools in-process, and agents managing agents (principle 2)."""

from __future__ import annotations

from taskflow.core.db import Database
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
    assert "not found, or you are not a member: list your projects (list_projects)" in hidden


async def test_list_workers(bot: McpUser, db: Database, team: Team) -> None:
    every = ok(await call(bot, "list_workers"))
    assert {w["handle"] for w in every["workers"]} == {"@sarah", "@ann", "@claude-code"}
    one = ok(await call(bot, "list_workers", handle="@ann"))
    assert [w["name"] for w in one["workers"]] == ["Ann Lee"]
    agents = ok(await call(bot, "list_workers", type="agent"))["workers"]
    humans = ok(await call(bot, "list_workers", type="human"))["workers"]
    assert [w["handle"] for w in agents] == ["@claude-code"]
    assert [w["handle"] for w in humans] == ["@ann", "@sarah"]
    assert "type" in await refused_unchanged(db, bot, "list_workers", type="robot")
    assert "no worker @ghost: list workers (list_workers)" in await refused_unchanged(
        db, bot, "list_workers", handle="@ghost"
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
    registered = ok(
        await call(
            bot,
            "manage_agents",
            action="register",
            handle="@helper",
            name="Helper",
            agent_type="claude",
            capabilities=["python"],
        )
    )
    issued = registered["issued"]
    assert issued["api_key"].startswith("tf_") and issued["worker"]["handle"] == "@helper"
    created, registered_entry = await audit_tail(db, 2)
    assert_audited(registered_entry, "agent_registered", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")

    second = ok(await call(bot, "manage_agents", action="create_key", handle="@helper", name="ci"))
    assert second["issued"]["key"]["name"] == "ci"
    keys = ok(await call(bot, "manage_agents", action="list_keys", handle="@helper"))["keys"]
    assert [k["name"] for k in keys] == ["default", "ci"]
    assert all("api_key" not in k for k in keys)  # listed keys never show the secret

    revoked = ok(
        await call(
            bot, "manage_agents", action="revoke_key", handle="@helper", key_id=keys[1]["id"]
        )
    )
    assert revoked["keys"][0]["revoked_at"] is not None
    assert_audited((await audit_tail(db))[0], "api_key_revoked", "@claude-code")
    rotated = ok(
        await call(
            bot, "manage_agents", action="rotate_key", handle="@helper", key_id=keys[0]["id"]
        )
    )
    assert rotated["issued"]["api_key"] != issued["api_key"]
    created, revoked_entry = await audit_tail(db, 2)  # one rotation: revoke and issue, one call
    assert_audited(revoked_entry, "api_key_revoked", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")
    assert created["request_id"] == revoked_entry["request_id"]

    assert "only @helper itself or the worker who registered it" in await refused_unchanged(
        db, ann, "manage_agents", action="list_keys", handle="@helper"
    )
    assert "needs key_id" in await refused_unchanged(
        db, bot, "manage_agents", action="revoke_key", handle="@helper"
    )
    assert "already revoked" in await refused_unchanged(
        db, bot, "manage_agents", action="revoke_key", handle="@helper", key_id=keys[1]["id"]
    )
    assert "is taken" in await refused_unchanged(
        db, bot, "manage_agents", action="register", handle="@ann", name="Not Ann"
    )


async def test_manage_agents_deactivate_and_reactivate(
    bot: McpUser, ann: McpUser, db: Database, team: Team
) -> None:
    await call(bot, "manage_agents", action="register", handle="@helper", name="Helper")
    await projects.add_member(db, team.sarah, "default", AddMember(handle="@helper"))
    task_id = (await tasks.create_task(db, team.sarah, CreateTask(title="T"))).task.id

    assert "only @helper itself or the worker who registered it can deactivate it" in (
        await refused_unchanged(db, ann, "manage_agents", action="deactivate", handle="@helper")
    )
    assert "no worker @ghost" in await refused_unchanged(
        db, bot, "manage_agents", action="deactivate", handle="@ghost"
    )
    assert "only agents can be deactivated" in await refused_unchanged(
        db, bot, "manage_agents", action="deactivate", handle="@ann"
    )
    assert "is active" in await refused_unchanged(
        db, bot, "manage_agents", action="reactivate", handle="@helper"
    )
    assert "key_id" in await refused_unchanged(
        db, bot, "manage_agents", action="deactivate", handle="@helper", key_id=1
    )

    off = ok(await call(bot, "manage_agents", action="deactivate", handle="@helper"))
    assert off["worker"]["active"] is False and len(off["keys"]) == 1
    assert off["keys"][0]["revoked_at"] is not None
    [entry] = await audit_tail(db)
    assert_audited(entry, "agent_deactivated", "@claude-code")
    assert entry["details"]["revoked_keys"][0]["id"] == off["keys"][0]["id"]
    assert "@helper is deactivated" in await refused_unchanged(
        db, bot, "assign_task", task_id=task_id, assignee="@helper"
    )
    before = await audit_count(db)
    again = ok(await call(bot, "manage_agents", action="deactivate", handle="@helper"))
    assert again["keys"] == [] and again["worker"]["active"] is False
    assert await audit_count(db) == before
    shown = ok(await call(ann, "list_workers", handle="@helper"))["workers"][0]
    assert shown["active"] is False

    on = ok(await call(bot, "manage_agents", action="reactivate", handle="@helper", name="back"))
    assert on["issued"]["worker"]["active"] is True and on["issued"]["key"]["name"] == "back"
    created, reactivated = await audit_tail(db, 2)
    assert_audited(reactivated, "agent_reactivated", "@claude-code")
    assert_audited(created, "api_key_created", "@claude-code")
    assigned = ok(await call(bot, "assign_task", task_id=task_id, assignee="@helper"))
    assert assigned["assignee"] == "@helper"

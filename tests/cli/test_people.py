"""project, member, worker and agent commands: output, JSON shapes, refusals, audit entries."""

from __future__ import annotations

from typing import Any

from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.handlers import workers as worker_ops
from tests.cli.conftest import Cli, audit_rows, last_audit_id, snapshot
from tests.cli.test_coverage import command_paths

PROJECT_KEYS = {
    "id",
    "slug",
    "name",
    "description",
    "owner",
    "approval_policy",
    "lease_seconds",
    "allow_open_subtasks",
    "recur_subtasks",
    "version",
    "created_at",
    "updated_at",
    "my_role",
}
WORKER_KEYS = {
    "id",
    "handle",
    "name",
    "type",
    "agent_type",
    "capabilities",
    "created_at",
    "active",
    "deactivated_at",
}


async def test_project_add_list_show_edit_delete(sarah: Cli, db: Database) -> None:
    mark = await last_audit_id(db)
    result = await sarah.ok("project", "add", "web", "Web app", "-d", "The site")
    assert "Created project web (Web app)" in result.stdout
    listed = await sarah.json("project", "list")
    assert [p["slug"] for p in listed] == ["default", "web"]
    assert set(listed[1]) == PROJECT_KEYS and listed[1]["my_role"] == "owner"
    shown = await sarah.json("project", "show", "web")
    assert shown["description"] == "The site" and shown["owner"] == "@sarah"
    assert "Web app" in (await sarah.ok("project", "list")).stdout
    edited = await sarah.json(
        "project", "edit", "web", "--name", "Website", "--approval", "review_required"
    )
    assert edited["name"] == "Website" and edited["approval_policy"] == "review_required"
    await sarah.ok("add", "In web", "-p", "web")
    await sarah.refused("project", "delete", "web", input="n\n")
    assert "Deleted project web" in (await sarah.ok("project", "delete", "web", "-f")).stdout
    await sarah.refused("project", "show", "web")
    rows = await audit_rows(db, mark)
    assert [(r["entity_type"], r["action"], r["via"]) for r in rows] == [
        ("project", "created", "cli"),
        ("project", "updated", "cli"),
        ("task", "created", "cli"),
        ("task", "deleted", "cli"),
        ("project", "deleted", "cli"),
    ]


async def test_project_refusals(sarah: Cli, db: Database) -> None:
    before = await snapshot(db)
    await sarah.refused("project", "add", "Bad Slug", "X", code=2)
    err = await sarah.refused("project", "add", "default", "Again")
    assert "already exists" in err
    await sarah.refused("project", "edit", "default", code=2)
    await sarah.refused("project", "add", "x", "Y", "--approval", "sometimes", code=2)
    assert await snapshot(db) == before


async def test_worker_add_human_and_agent(sarah: Cli, db: Database) -> None:
    mark = await last_audit_id(db)
    result = await sarah.ok("worker", "add", "@ada", "--type", "human", "--name", "Ada")
    assert "Added human @ada, member of default" in result.stdout
    result = await sarah.ok(
        "worker",
        "add",
        "@claude-code",
        "-t",
        "agent",
        "-n",
        "Claude",
        "-a",
        "claude",
        "-c",
        "code,rev",
    )
    assert "Added agent @claude-code" in result.stdout
    assert "tf_" in result.stdout and "only time it is shown" in result.stdout
    workers = await sarah.json("worker", "list")
    assert [w["handle"] for w in workers] == ["@ada", "@claude-code", "@sarah"]
    assert set(workers[1]) == WORKER_KEYS
    assert workers[1]["agent_type"] == "claude" and workers[1]["capabilities"] == ["code", "rev"]
    assert (await sarah.json("worker", "show", "@ada"))["type"] == "human"
    # Phase 1 users assign new workers right away: they joined the default project.
    assert (await sarah.json("add", "For Ada", "-a", "@ada"))["task"]["assignee"] == "@ada"
    members = await sarah.json("member", "list")
    assert {(m["handle"], m["role"]) for m in members} == {
        ("@sarah", "owner"),
        ("@ada", "member"),
        ("@claude-code", "member"),
    }
    rows = await audit_rows(db, mark)
    assert [(r["entity_type"], r["action"], r["actor_handle"], r["via"]) for r in rows[:5]] == [
        ("worker", "created", "@sarah", "cli"),
        ("project", "member_added", "@sarah", "cli"),
        ("worker", "agent_registered", "@sarah", "cli"),
        ("api_key", "api_key_created", "@sarah", "cli"),
        ("project", "member_added", "@sarah", "cli"),
    ]
    solo = await sarah.json("worker", "add", "@solo", "-t", "human", "-n", "Solo", "--no-join")
    assert solo["project"] is None and solo["api_key"] is None


async def test_worker_add_is_all_or_nothing(sarah: Cli, db: Database) -> None:
    before = await snapshot(db)
    err = await sarah.refused("worker", "add", "@ada", "-t", "human", "-n", "Ada", "-p", "nowhere")
    assert "not found" in err
    await sarah.refused("worker", "add", "ada", "-t", "human", "-n", "Ada", code=2)
    await sarah.refused("worker", "add", "@ada", "-t", "human", "-n", "Ada", "-a", "claude", code=2)
    assert await snapshot(db) == before
    await sarah.ok("worker", "add", "@ada", "-t", "human", "-n", "Ada")
    err = await sarah.refused("worker", "add", "@ada", "-t", "human", "-n", "Ada")
    assert "taken" in err


async def test_agent_register_keys_rotate_revoke(sarah: Cli, db: Database) -> None:
    mark = await last_audit_id(db)
    issued = await sarah.json("agent", "register", "@bot", "--name", "Bot", "-a", "qwen", "-c", "x")
    assert set(issued) == {"worker", "api_key", "key"}
    key, key_id = issued["api_key"], issued["key"]["id"]
    assert key.startswith("tf_") and issued["worker"]["agent_type"] == "qwen"
    assert [a["handle"] for a in await sarah.json("agent", "list")] == ["@bot"]
    # A registered agent can act once it is a member.
    await sarah.ok("member", "add", "@bot")
    assert (await sarah.json("whoami", env={"TASKFLOW_TOKEN": key}))["worker"]["handle"] == "@bot"
    second = await sarah.json("agent", "new-key", "@bot", "--name", "ci")
    keys = await sarah.json("agent", "keys", "@bot")
    assert [k["name"] for k in keys] == ["default", "ci"]
    assert all("api_key" not in k for k in keys)
    rotated = await sarah.json("agent", "rotate", "@bot", key_id)
    assert rotated["api_key"] != key
    err = await sarah.refused("whoami", env={"TASKFLOW_TOKEN": key})
    assert "invalid API key" in err
    assert (await sarah.json("whoami", env={"TASKFLOW_TOKEN": rotated["api_key"]}))["worker"][
        "handle"
    ] == "@bot"
    revoked = await sarah.json("agent", "revoke", "@bot", second["key"]["id"])
    assert revoked["revoked_at"] is not None
    await sarah.refused("whoami", env={"TASKFLOW_TOKEN": second["api_key"]})
    err = await sarah.refused("agent", "revoke", "@bot", second["key"]["id"])
    assert "already revoked" in err
    assert "API keys of @bot" in (await sarah.ok("agent", "keys", "@bot")).stdout
    rows = await audit_rows(db, mark)
    actions = [r["action"] for r in rows]
    assert actions == [
        "agent_registered",
        "api_key_created",
        "member_added",
        "api_key_created",
        "api_key_revoked",
        "api_key_created",
        "api_key_revoked",
    ]
    assert all(r["via"] == "cli" and r["actor_handle"] == "@sarah" for r in rows)
    out = (await sarah.ok("agent", "register", "@bot2", "-n", "Bot 2")).stdout
    assert "tf_" in out and "member add" in out


async def test_agent_deactivate_and_reactivate(sarah: Cli, db: Database) -> None:
    key = (await sarah.json("worker", "add", "@bot", "-t", "agent", "-n", "Bot"))["api_key"]
    task = (await sarah.json("add", "Fix it"))["task"]["id"]
    assert [w["handle"] for w in await sarah.json("worker", "list", "--type", "human")] == [
        "@sarah"
    ]
    mark = await last_audit_id(db)
    off = await sarah.ok("agent", "deactivate", "@bot")
    assert "Deactivated @bot: 1 key(s) revoked" in off.stdout
    [entry] = await audit_rows(db, mark)
    assert (entry["action"], entry["actor_handle"], entry["via"]) == (
        "agent_deactivated",
        "@sarah",
        "cli",
    )
    assert "invalid API key" in await sarah.refused("whoami", env={"TASKFLOW_TOKEN": key})
    before = await snapshot(db)
    assert "@bot is deactivated" in await sarah.refused("assign", task, "@bot")
    again = await sarah.ok("agent", "deactivate", "@bot")
    assert "already deactivated: nothing changed" in again.stderr
    assert await snapshot(db) == before
    agents = await sarah.json("agent", "list")
    assert [(a["handle"], a["active"]) for a in agents] == [("@bot", False)]
    assert "no, since" in (await sarah.ok("agent", "list")).stdout

    back = await sarah.json("agent", "reactivate", "@bot", "--name", "back")
    assert back["worker"]["active"] is True and back["key"]["name"] == "back"
    me = await sarah.json("whoami", env={"TASKFLOW_TOKEN": back["api_key"]})
    assert me["worker"]["handle"] == "@bot" and me["worker"]["email"] is None
    assert "is active" in await sarah.refused("agent", "reactivate", "@bot")
    assert (await sarah.json("assign", task, "@bot"))["assignee"] == "@bot"


async def test_agent_deactivate_refusals(sarah: Cli, db: Database) -> None:
    await sarah.ok("agent", "register", "@other", "-n", "Other")
    bot_key = (await sarah.json("worker", "add", "@bot", "-t", "agent", "-n", "Bot"))["api_key"]
    before = await snapshot(db)
    as_bot = {"TASKFLOW_TOKEN": bot_key}
    err = await sarah.refused("agent", "deactivate", "@other", env=as_bot)
    assert "only @other itself or the worker who registered it can deactivate it" in err
    assert "no worker @ghost" in await sarah.refused("agent", "deactivate", "@ghost")
    assert "only agents" in await sarah.refused("agent", "deactivate", "@sarah")
    bare = await sarah.refused("agent", "deactivate", "bot")  # the command's rule, one red line
    assert "invalid input: handle: String should match pattern '^@[a-z0-9_-]+$'" in bare
    assert await snapshot(db) == before


async def test_member_add_remove_role(sarah: Cli, db: Database) -> None:
    await sarah.ok("project", "add", "web", "Web")
    await sarah.ok("worker", "add", "@ada", "-t", "human", "-n", "Ada", "--no-join")
    mark = await last_audit_id(db)
    added = await sarah.json("member", "add", "@ada", "-p", "web", "--role", "viewer")
    assert added == {**added, "handle": "@ada", "role": "viewer"}
    result = await sarah.ok("member", "role", "@ada", "admin", "-p", "web")
    assert "@ada is now admin of web" in result.stdout
    assert "Members of web" in (await sarah.ok("member", "list", "-p", "web")).stdout
    err = await sarah.refused("member", "add", "@ada", "-p", "web")
    assert "already a member" in err
    err = await sarah.refused("member", "remove", "@sarah", "-p", "web")
    assert "last owner" in err
    assert "no longer a member" in (await sarah.ok("member", "remove", "@ada", "-p", "web")).stdout
    rows = await audit_rows(db, mark)
    assert [(r["action"], r["details"]["member"], r["via"]) for r in rows] == [
        ("member_added", "@ada", "cli"),
        ("role_changed", "@ada", "cli"),
        ("member_removed", "@ada", "cli"),
    ]
    await sarah.refused("member", "role", "@ada", "boss", "-p", "web", code=2)


async def test_every_worker_operation_is_a_command(sarah: Cli) -> None:
    """Each operation of the workers aggregate runs from the command its declaration names."""
    declared = {
        name: op.cli
        for name, op in REGISTRY.items()
        if op.handler.__module__ == worker_ops.__name__
    }
    assert set(declared.values()) <= command_paths()
    issued = await sarah.json("agent", "register", "@bot", "-n", "Bot")
    ran: dict[str, Any] = {}
    for name, args in (
        ("whoami", ["whoami"]),
        ("list_workers", ["worker", "list"]),
        ("get_worker", ["worker", "show", "@bot"]),
        ("register_agent", ["agent", "register", "@bot2", "-n", "Bot 2"]),
        ("list_api_keys", ["agent", "keys", "@bot"]),
        ("create_api_key", ["agent", "new-key", "@bot"]),
        ("rotate_api_key", ["agent", "rotate", "@bot", str(issued["key"]["id"])]),
        ("revoke_api_key", ["agent", "revoke", "@bot", "{create_api_key}"]),
        ("deactivate_agent", ["agent", "deactivate", "@bot"]),
        ("reactivate_agent", ["agent", "reactivate", "@bot"]),
    ):
        assert " ".join(args).startswith(declared[name]), name
        made = ran.get("create_api_key")
        args = [str(made["key"]["id"]) if a == "{create_api_key}" and made else a for a in args]
        ran[name] = await sarah.json(*args)
    assert set(ran) == set(declared)
    assert ran["revoke_api_key"]["revoked_at"] and ran["reactivate_agent"]["worker"]["active"]


async def test_member_commands_refuse_a_bad_handle_in_one_line(sarah: Cli, db: Database) -> None:
    await sarah.ok("project", "add", "web", "Web app")
    before = await snapshot(db)
    bare = await sarah.refused("member", "remove", "bot", "-p", "web")
    assert "invalid input: handle: String should match pattern" in bare
    assert await snapshot(db) == before

"""The workflow verbs through the CLI, each with its audit entry, and the agent acting with its
key (TASKFLOW_TOKEN) exactly as a human does."""

from __future__ import annotations

from taskflow.core.db import Database
from tests.cli.conftest import Cli, audit_rows, last_audit_id, snapshot


async def test_start_progress_complete(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Work")
    mark = await last_audit_id(db)
    assert "Started #1 Work (assigned to @sarah)" in (await sarah.ok("start", "1")).stdout
    data = await sarah.json("progress", "1", "--percent", "40", "--note", "halfway-ish")
    assert data["progress_percent"] == 40 and data["status"] == "in_progress"
    assert "Completed #1 Work" in (await sarah.ok("complete", "1")).stdout
    rows = await audit_rows(db, mark)
    assert [(r["action"], r["actor_handle"], r["via"]) for r in rows] == [
        ("started", "@sarah", "cli"),
        ("progressed", "@sarah", "cli"),
        ("completed", "@sarah", "cli"),
    ]
    assert rows[1]["details"]["note"] == "halfway-ish"
    assert rows[1]["details"]["progress_percent"] == 40


async def test_refused_moves_change_nothing(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Work")
    before = await snapshot(db)
    err = await sarah.refused("progress", "1", "--percent", "10")
    assert "start it first" in err and "(next: taskflow start 1)" in err
    err = await sarah.refused("approve", "1")
    assert "not in review" in err
    err = await sarah.refused("reject", "1", "--reason", "no")
    assert "not in review" in err
    err = await sarah.refused("unblock", "1")
    assert "not blocked" in err
    await sarah.refused("reject", "1", code=2)  # --reason is required
    assert await snapshot(db) == before


async def _reviewer_key(cli: Cli) -> str:
    """Another agent of @sarah's, not related to @claude-code by registration: a reviewer
    separation of duties allows (a sibling, neither registrant nor registered)."""
    added = await cli.json("worker", "add", "@reviewer", "--type", "agent", "--name", "Reviewer")
    return str(added["api_key"])


async def test_review_cycle_between_agent_and_human(
    sarah: Cli, agent_key: str, db: Database
) -> None:
    agent = {"TASKFLOW_TOKEN": agent_key}
    await sarah.ok("project", "edit", "default", "--approval", "review_required")
    await sarah.ok("add", "Agent's job", "--priority", "critical")
    await sarah.ok("add", "Less urgent", "--priority", "low")
    mark = await last_audit_id(db)
    claimed = await sarah.json("claim", env=agent)
    assert claimed["id"] == 1 and claimed["assignee"] == "@claude-code"
    assert claimed["status"] == "in_progress"
    err = await sarah.refused("complete", "1", env=agent)
    assert "requires review" in err
    await sarah.ok("progress", "1", "--percent", "100", env=agent)
    assert "waiting for review" in (await sarah.ok("review", "1", env=agent)).stdout
    err = await sarah.refused("approve", "1", env=agent)
    assert "your own work" in err
    result = await sarah.ok("reject", "1", "--reason", "needs tests")
    assert "back to in_progress" in result.stdout
    await sarah.ok("review", "1", env=agent)
    err = await sarah.refused("approve", "1")  # @sarah registered @claude-code: not hers to pass
    assert "an agent you registered" in err
    reviewer = {"TASKFLOW_TOKEN": await _reviewer_key(sarah)}
    data = await sarah.json("approve", "1", "--note", "good", env=reviewer)
    assert data["status"] == "completed" and data["progress_percent"] == 100
    rows = [r for r in await audit_rows(db, mark) if r["entity_type"] == "task"]
    assert [(r["action"], r["actor_handle"], r["actor_type"], r["via"]) for r in rows] == [
        ("claimed", "@claude-code", "agent", "cli"),
        ("progressed", "@claude-code", "agent", "cli"),
        ("review_requested", "@claude-code", "agent", "cli"),
        ("rejected", "@sarah", "human", "cli"),
        ("review_requested", "@claude-code", "agent", "cli"),
        ("approved", "@reviewer", "agent", "cli"),
    ]
    assert rows[3]["details"]["reason"] == "needs tests"
    # The next claim takes the remaining task; then nothing is left.
    assert (await sarah.json("claim", "-p", "default", env=agent))["id"] == 2
    err = await sarah.refused("claim", env=agent)
    assert "no open unassigned task" in err


async def test_claim_with_tags(sarah: Cli, agent_key: str) -> None:
    agent = {"TASKFLOW_TOKEN": agent_key}
    await sarah.ok("add", "Frontend", "--tags", "ui", "--priority", "critical")
    await sarah.ok("add", "Backend", "--tags", "api")
    assert (await sarah.json("claim", "--tag", "api", env=agent))["id"] == 2
    assert "Claimed #1 Frontend" in (await sarah.ok("claim", env=agent)).stdout


async def test_delegate_assign_block_unblock(sarah: Cli, agent_key: str, db: Database) -> None:
    await sarah.ok("add", "Work")
    await sarah.ok("start", "1")
    mark = await last_audit_id(db)
    assert "to @claude-code" in (await sarah.ok("delegate", "1", "--to", "@claude-code")).stdout
    assert (await sarah.json("assign", "1", "@sarah"))["assignee"] == "@sarah"
    assert (await sarah.json("assign", "1", "none"))["assignee"] is None
    assert (await sarah.json("block", "1", "--reason", "waiting"))["status"] == "blocked"
    assert "now pending" in (await sarah.ok("unblock", "1")).stdout
    rows = await audit_rows(db, mark)
    assert [(r["action"], r["via"]) for r in rows] == [
        ("delegated", "cli"),
        ("assigned", "cli"),
        ("assigned", "cli"),
        ("blocked", "cli"),
        ("unblocked", "cli"),
    ]
    assert rows[0]["details"]["to"] == "@claude-code"
    assert rows[3]["details"]["reason"] == "waiting"
    err = await sarah.refused("delegate", "1", "--to", "@nobody")
    assert "@nobody" in err


async def test_json_has_work_times_and_seed_ids_through_a_review_cycle(
    sarah: Cli, agent_key: str
) -> None:
    agent = {"TASKFLOW_TOKEN": agent_key}
    await sarah.ok("project", "edit", "default", "--approval", "review_required")
    created = (await sarah.json("add", "Agent's job"))["task"]
    assert (created["started_at"], created["completed_at"]) == (None, None)
    started = await sarah.json("start", "1", env=agent)
    first = started["started_at"]
    assert first is not None
    assert (await sarah.json("review", "1", env=agent))["started_at"] == first
    rejected = await sarah.json("reject", "1", "--reason", "needs tests")
    assert (rejected["status"], rejected["started_at"]) == ("in_progress", first)
    await sarah.ok("review", "1", env=agent)
    approved = await sarah.json("approve", "1", env={"TASKFLOW_TOKEN": await _reviewer_key(sarah)})
    assert approved["started_at"] == first and approved["completed_at"] is not None
    reopened = await sarah.json("review", "1", env=agent)  # completed -> review
    assert (reopened["status"], reopened["completed_at"]) == ("review", None)
    task = (await sarah.json("show", "1"))["task"]
    assert (task["started_at"], task["completed_at"]) == (first, None)
    ids = {w["handle"]: w["id"] for w in await sarah.json("worker", "list")}
    default = next(p for p in await sarah.json("project", "list") if p["slug"] == "default")
    assert (task["project_id"], task["assignee_id"], task["created_by_id"]) == (
        default["id"],
        ids["@claude-code"],
        ids["@sarah"],
    )
    listed = await sarah.json("list")
    assert [(t["id"], t["started_at"], t["parent_task_id"]) for t in listed] == [(1, first, None)]


async def test_show_json_lists_direct_children(sarah: Cli) -> None:
    await sarah.ok("add", "Root")
    await sarah.ok("subtask", "1", "Child a")
    await sarah.ok("subtask", "1", "Child b")
    await sarah.ok("subtask", "2", "Grandchild")
    detail = await sarah.json("show", "1", "--tree")
    assert detail["subtasks"] == [2, 3]
    assert [(n["id"], n["parent_task_id"]) for n in detail["subtree"]] == [(2, 1), (4, 2), (3, 1)]


async def test_reopen_repeat_and_review_rules(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Work")
    await sarah.ok("start", "1")
    before = await snapshot(db)
    await sarah.ok("start", "1")  # a repeat: answered unchanged, nothing written
    assert await snapshot(db) == before
    await sarah.ok("complete", "1")
    data = await sarah.json("reopen", "1")
    assert data["status"] == "review" and data["completed_at"] is None
    err = await sarah.refused("reopen", "1", "--jsn", code=2)
    assert "No such option: --jsn" in err and "--json" in err


async def test_move_runs_the_verb_that_reaches_the_status(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Work")
    mark = await last_audit_id(db)
    assert "#1 Work is now in_progress" in (await sarah.ok("move", "1", "in_progress")).stdout
    assert (await sarah.json("move", "1", "blocked"))["status"] == "blocked"
    assert (await sarah.json("move", "1", "pending"))["status"] == "in_progress", "unblock"
    rows = await audit_rows(db, mark)
    assert [r["action"] for r in rows] == ["started", "blocked", "unblocked"]
    before = await snapshot(db)
    err = await sarah.refused("move", "1", "pending")
    assert "not blocked" in err
    await sarah.refused("move", "1", "done", code=2)  # not a status: Typer names the choices
    assert await snapshot(db) == before


async def test_next_steps_are_typed_as_the_command_takes_them(sarah: Cli, agent_key: str) -> None:
    """A handle the command takes positionally is typed as a value, not as `--handle`."""
    err = await sarah.refused("agent", "revoke", "@claude-code", "999")
    assert "(next: taskflow agent keys @claude-code)" in " ".join(err.split())

"""Issue 13's second half from the terminal: named reviewers, parents finish last, recurrence,
and Phase 1's free-text recurrence shown as legacy."""

from __future__ import annotations

from pathlib import Path

from taskflow.core.db import Database
from tests.cli.conftest import Cli, snapshot
from tests.cli.test_import import rich_store, write_store


async def _agent(sarah: Cli, handle: str) -> dict[str, str]:
    added = await sarah.json("worker", "add", handle, "--type", "agent", "--name", handle[1:])
    return {"TASKFLOW_TOKEN": str(added["api_key"])}


async def test_a_named_reviewer_decides_and_sees_it_in_my_work(sarah: Cli, agent_key: str) -> None:
    worker = {"TASKFLOW_TOKEN": agent_key}  # @claude-code
    rev, other = await _agent(sarah, "@rev"), await _agent(sarah, "@other")
    await sarah.ok("add", "Write the spec")
    await sarah.ok("start", "1", env=worker)
    asked = await sarah.ok("review", "1", "--reviewer", "@rev", env=worker)
    assert "waiting for @rev's review" in asked.stdout
    mine = await sarah.json("list", "--mine", env=rev)
    assert [t["id"] for t in mine] == [1]
    assert "Awaiting your review" in (await sarah.ok("status", env=rev)).stdout
    assert await sarah.json("list", "--mine", env=other) == []
    shown = await sarah.ok("show", "1")
    assert "Reviewer" in shown.stdout and "@rev" in shown.stdout
    assert "your own work" in await sarah.refused("approve", "1", env=worker)
    err = await sarah.refused("approve", "1", env=other)
    assert "waiting for @rev's review: only @rev or a project admin" in err
    assert "Approved #1" in (await sarah.ok("approve", "1", env=rev)).stdout
    assert (await sarah.json("show", "1"))["task"]["status"] == "completed"
    # @sarah owns the project: she may decide a review named for someone else.
    await sarah.ok("add", "Second")
    await sarah.ok("start", "2", env=worker)
    await sarah.ok("review", "2", "--reviewer", "@rev", env=worker)
    await sarah.ok("reject", "2", "--reason", "needs tests")
    assert (await sarah.json("show", "2"))["task"]["status"] == "in_progress"


async def test_parents_finish_last_unless_the_project_allows(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Parent")
    await sarah.ok("subtask", "1", "Child A")
    await sarah.ok("subtask", "1", "Child B")
    for task_id in ("2", "3", "1"):
        await sarah.ok("start", task_id)
    before = await snapshot(db)
    err = await sarah.refused("complete", "1")
    assert "#2 'Child A' (in_progress), #3 'Child B' (in_progress)" in err
    assert "parents finish last" in err
    assert await snapshot(db) == before
    await sarah.ok("project", "edit", "default", "--allow-open-subtasks")
    await sarah.ok("complete", "1")
    assert (await sarah.json("show", "1"))["task"]["rolled_up_progress"] == 0


async def test_a_weekly_task_recurs_three_times(sarah: Cli) -> None:
    await sarah.ok("add", "Water plants", "--recurrence", "weekly", "--due", "2026-12-07")
    for task_id in ("1", "2", "3"):
        await sarah.ok("start", task_id)
        await sarah.ok("complete", task_id)
    listed = await sarah.json("list", "--sort", "due_date")
    assert [(t["id"], t["status"], t["due_date"][:10]) for t in listed] == [
        (1, "completed", "2026-12-07"),
        (2, "completed", "2026-12-14"),
        (3, "completed", "2026-12-21"),
        (4, "pending", "2026-12-28"),
    ]
    history = await sarah.json("audit", "task", "4")
    assert [e["action"] for e in history] == ["created", "recurred"]


async def test_a_bad_recurrence_is_one_red_line_with_the_accepted_forms(
    sarah: Cli, db: Database
) -> None:
    before = await snapshot(db)
    err = await sarah.refused("add", "x", "--recurrence", "fortnightly", code=2)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --recurrence")
    assert "daily, weekly, monthly, every N days, every N weeks" in err and "RRULE" in err
    assert await snapshot(db) == before


async def test_phase1_free_text_recurrence_imports_and_shows_as_legacy(
    sarah: Cli, db: Database, tmp_path: Path
) -> None:
    data = rich_store()
    data["tasks"][0]["recurrence"] = "every other tuesday"
    # Phase 1 let a parent be completed before its subtasks: its history imports as it was.
    data["tasks"][1]["status"] = "completed"
    await sarah.ok("import", write_store(tmp_path, data))
    task = (await sarah.json("show", "1"))["task"]
    assert task["recurrence"] == "every other tuesday" and task["recurrence_legacy"] is True
    assert "legacy Phase 1 text: does not recur" in (await sarah.ok("show", "1")).stdout
    child = await sarah.json("show", "2", "--tree")
    assert child["task"]["status"] == "completed"
    assert child["task"]["rolled_up_progress"] == 40  # its open grandchild's progress

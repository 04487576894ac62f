"""Phase 1's task commands: add, subtask, list (every filter and sort), show, edit, delete,
search, upcoming, overdue, due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from taskflow.core.db import Database
from tests.cli.conftest import Cli, audit_rows, last_audit_id, snapshot

TASK_KEYS = {
    "id",
    "project",
    "parent_id",
    "title",
    "description",
    "status",
    "priority",
    "progress_percent",
    "assignee",
    "created_by",
    "tags",
    "due_date",
    "recurrence",
    "version",
    "created_at",
    "updated_at",
}


async def test_add_with_every_phase1_option(sarah: Cli, agent_key: str, db: Database) -> None:
    await sarah.ok("project", "add", "web", "Web app")
    await sarah.ok("member", "add", "@claude-code", "-p", "web")
    mark = await last_audit_id(db)
    result = await sarah.ok(
        "add",
        "Build [the] API",
        "-d",
        "REST endpoints",
        "-p",
        "web",
        "--assign",
        "@claude-code",
        "--priority",
        "high",
        "--tags",
        "api, backend",
        "--due",
        "2030-01-15",
        "--created-by",
        "@sarah",
    )
    assert "Created task #1 Build [the] API in web" in result.stdout
    task = (await sarah.json("show", "1"))["task"]
    assert set(task) >= TASK_KEYS
    assert task["project"] == "web" and task["assignee"] == "@claude-code"
    assert task["priority"] == "high" and task["tags"] == ["api", "backend"]
    assert task["due_date"].startswith("2030-01-15T00:00:00") and task["created_by"] == "@sarah"
    assert task["description"] == "REST endpoints"
    rows = await audit_rows(db, mark)
    assert [(r["action"], r["actor_handle"], r["via"], r["task_id"]) for r in rows] == [
        ("created", "@sarah", "cli", 1)
    ]
    child = await sarah.json("add", "Child", "--parent", "1")
    assert child["task"]["parent_id"] == 1 and child["task"]["project"] == "web"


async def test_add_refusals_change_nothing(sarah: Cli, db: Database) -> None:
    before = await snapshot(db)
    err = await sarah.refused("add", "X", "--created-by", "@bob")
    assert "created by whoever is signed in" in err
    await sarah.refused("add", "X", "--priority", "urgent", code=2)
    await sarah.refused("add", "X", "--due", "next tuesday", code=2)
    await sarah.refused("add", "x" * 501, code=2)
    err = await sarah.refused("add", "X", "-p", "nope")
    assert "not found" in err
    err = await sarah.refused("add", "X", "--assign", "@ghost")
    assert "@ghost" in err
    await sarah.refused("add", "X", "--parent", "99")
    assert await snapshot(db) == before


async def test_subtask(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Parent")
    mark = await last_audit_id(db)
    result = await sarah.ok("subtask", "1", "Child", "--priority", "low", "--tags", "x")
    assert "Created subtask #2 Child under #1" in result.stdout
    data = await sarah.json("subtask", "2", "Grandchild", "-a", "@sarah")
    assert set(data) >= TASK_KEYS
    assert data["parent_id"] == 2 and data["assignee"] == "@sarah"
    rows = await audit_rows(db, mark)
    assert ("subtask_added", 1) in [(r["action"], r["entity_id"]) for r in rows]
    assert all(r["via"] == "cli" and r["actor_handle"] == "@sarah" for r in rows)
    await sarah.refused("subtask", "99", "Orphan")


async def _ids(cli: Cli, *args: str) -> list[int]:
    return [t["id"] for t in await cli.json("list", *args)]


async def test_list_filters_and_sorts(sarah: Cli, agent_key: str) -> None:
    await sarah.ok("project", "add", "web", "Web")
    await sarah.ok("add", "Alpha login", "--priority", "low", "--tags", "ui", "--due", "2030-03-01")
    await sarah.ok("add", "Beta", "-d", "about login", "--priority", "critical", "--tags", "ui,api")
    await sarah.ok("add", "Gamma", "-a", "@claude-code", "--due", "2030-01-01")
    await sarah.ok("subtask", "1", "Alpha child")
    await sarah.ok("add", "Web thing", "-p", "web")
    await sarah.ok("start", "3")
    assert await _ids(sarah) == [1, 2, 3, 4, 5]
    assert await _ids(sarah, "-p", "web") == [5]
    assert await _ids(sarah, "-s", "in_progress") == [3]
    assert await _ids(sarah, "-a", "@claude-code") == [3]
    assert await _ids(sarah, "--parent", "1") == [4]
    assert await _ids(sarah, "--search", "login") == [1, 2]
    assert await _ids(sarah, "--priority", "critical") == [2]
    assert await _ids(sarah, "--tag", "ui") == [1, 2]
    assert await _ids(sarah, "--tag", "ui", "--tag", "api") == [2]
    assert await _ids(sarah, "--created-by", "@sarah") == [1, 2, 3, 4, 5]
    assert await _ids(sarah, "--created-by", "@claude-code") == []
    assert await _ids(sarah, "--due-before", "2030-02-01") == [3]
    assert await _ids(sarah, "--due-after", "2030-02-01") == [1]
    assert await _ids(sarah, "--no-assignee") == [1, 2, 4, 5]
    assert await _ids(sarah, "--sort", "priority") == [2, 3, 4, 5, 1]
    assert await _ids(sarah, "--sort", "due_date") == [3, 1, 2, 4, 5]
    assert await _ids(sarah, "--sort", "created", "--reverse") == [5, 4, 3, 2, 1]
    assert (await _ids(sarah, "--sort", "updated", "--reverse"))[0] == 3
    assert await _ids(sarah, "--limit", "2") == [1, 2]
    table = (await sarah.ok("list")).stdout
    for title in ("Alpha login", "Beta", "Gamma", "Web thing"):
        assert title in table
    assert "No tasks match" in (await sarah.ok("list", "-s", "blocked")).stdout


async def test_list_has_due_date_and_title_sort(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "delta")
    await sarah.ok("add", "Bravo", "--due", "2030-01-01")
    await sarah.ok("add", "alpha")
    await sarah.ok("add", "Charlie", "--due", "2029-01-01")
    assert await _ids(sarah, "--has-due-date") == [2, 4]
    assert await _ids(sarah, "--no-due-date") == [1, 3]
    assert await _ids(sarah, "--has-due-date", "--sort", "title") == [2, 4]
    assert await _ids(sarah, "--sort", "title") == [3, 2, 4, 1]
    assert await _ids(sarah, "--sort", "title", "--reverse") == [1, 4, 2, 3]
    assert await _ids(sarah, "--sort", "title", "--limit", "2") == [3, 2]
    err = await sarah.refused("list", "--sort", "name", code=2)
    assert "--sort" in err
    # Past one page (500 tasks): the CLI follows the title cursor to the second page.
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tasks (project_id, title, created_by_id) "
                "SELECT p.id, 'bulk ' || lpad(g::text, 3, '0'), w.id "
                "FROM generate_series(1, 520) g, projects p, workers w "
                "WHERE p.slug = 'default' AND w.handle = '@sarah'"
            )
        )
    titles = [t["title"] for t in await sarah.json("list", "--sort", "title")]
    bulk = [f"bulk {n:03}" for n in range(1, 521)]
    assert titles == ["alpha", "Bravo", *bulk, "Charlie", "delta"]
    backwards = [t["title"] for t in await sarah.json("list", "--sort", "title", "--reverse")]
    assert backwards == titles[::-1]


async def test_list_follows_pages(sarah: Cli) -> None:
    await sarah.ok("add", "Root")
    titles = [f"t{i}" for i in range(12)]
    for title in titles:
        await sarah.ok("subtask", "1", title)
    # 13 tasks, fetched across pages of 500: all returned in order.
    assert len(await sarah.json("list")) == 13


async def test_search(sarah: Cli) -> None:
    await sarah.ok("add", "Fix login bug")
    await sarah.ok("add", "Docs", "-d", "explain LOGIN flow")
    await sarah.ok("add", "Other")
    await sarah.ok("start", "2")
    assert [t["id"] for t in await sarah.json("search", "login")] == [1, 2]
    assert [t["id"] for t in await sarah.json("search", "login", "-s", "in_progress")] == [2]
    assert [t["id"] for t in await sarah.json("search", "login", "-p", "default")] == [1, 2]
    assert "Fix login bug" in (await sarah.ok("search", "login")).stdout


async def test_show_and_tree_with_rolled_up_progress(sarah: Cli) -> None:
    await sarah.ok("add", "Root")
    await sarah.ok("subtask", "1", "A")
    await sarah.ok("subtask", "1", "B")
    await sarah.ok("subtask", "2", "A1")
    await sarah.ok("start", "4")
    await sarah.ok("progress", "4", "--percent", "50")
    await sarah.ok("start", "3")
    await sarah.ok("complete", "3")
    data = await sarah.json("show", "1", "--tree")
    assert set(data) == {"task", "subtree", "subtasks", "next_cursor"}
    assert data["next_cursor"] is None  # one page holds it all
    assert data["subtasks"] == [2, 3]  # direct children only
    assert data["task"]["rolled_up_progress"] == 75  # mean of A (50) and B (100)
    assert [(n["id"], n["depth"]) for n in data["subtree"]] == [(2, 1), (4, 2), (3, 1)]
    tree = (await sarah.ok("show", "1", "--tree")).stdout
    lines = tree.splitlines()
    assert lines[0].startswith("#1 Root") and "75%" in lines[0]
    assert any("#4 A1" in line and "in_progress" in line for line in lines)
    assert any(line.lstrip("│ ").startswith(("├── #2", "└── #2")) for line in lines)
    panel = (await sarah.ok("show", "1")).stdout
    assert "Rolled up" in panel and "2 direct (show --tree" in panel
    err = await sarah.refused("show", "42")
    assert "task 42 not found" in err


async def test_show_pages_through_a_subtree(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Root")
    for title in ("A", "B", "C"):
        await sarah.ok("subtask", "1", title)
    await sarah.ok("subtask", "2", "A1")
    await sarah.ok("subtask", "5", "A1a")  # 1 > 2 (A) > 5 (A1) > 6 (A1a); 3 (B); 4 (C)
    order = [(2, 1), (5, 2), (6, 3), (3, 1), (4, 1)]
    first = await sarah.json("show", "1", "--limit", "2")
    assert [(n["id"], n["depth"]) for n in first["subtree"]] == order[:2]
    assert first["subtasks"] == [2, 3, 4] and first["next_cursor"]
    second = await sarah.json("show", "1", "--limit", "2", "--cursor", first["next_cursor"])
    assert [(n["id"], n["depth"]) for n in second["subtree"]] == order[2:4]
    assert second["task"]["rolled_up_progress"] == first["task"]["rolled_up_progress"]
    whole = await sarah.json("show", "1", "--all", "--limit", "2")
    assert [(n["id"], n["depth"]) for n in whole["subtree"]] == order
    assert whole["next_cursor"] is None
    shallow = await sarah.json("show", "1", "--all", "--depth", "1")
    assert [n["id"] for n in shallow["subtree"]] == [2, 3, 4]
    tree = (await sarah.ok("show", "1", "--tree", "--limit", "2")).stdout
    hint = tree.splitlines()[-1]
    assert hint.startswith("2 nodes shown; the rest: taskflow show 1 --tree --limit 2 --cursor ")
    rest = (await sarah.ok(*hint.split("the rest: taskflow ")[1].split()[:7])).stdout
    assert "#6 A1a" in rest and "(under #5)" in rest and "#3 B" in rest and "#4 C" not in rest
    everything = (await sarah.ok("show", "1", "--tree", "--all", "--limit", "2")).stdout
    assert "nodes shown" not in everything and "#4 C" in everything


async def test_show_refuses_bad_pages_and_changes_nothing(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Root")
    await sarah.ok("subtask", "1", "A")
    await sarah.ok("subtask", "1", "B")
    await sarah.ok("add", "Other")
    other = (await sarah.json("show", "1", "--limit", "1"))["next_cursor"]
    before = await snapshot(db)
    for args, says in (
        (("--limit", "0"), "limit: Input should be greater than or equal to 1"),
        (("--limit", "1001"), "limit: Input should be less than or equal to 1000"),
        (("--depth", "-1"), "depth: Input should be greater than or equal to 0"),
        (("--cursor", "nonsense"), "invalid cursor: pass the next_cursor"),
    ):
        assert says in await sarah.refused("show", "1", *args)
    err = await sarah.refused("show", "4", "--cursor", other)
    assert "pages the subtree of task 1, not of task 4" in err
    assert await snapshot(db) == before


async def test_edit(sarah: Cli, db: Database, agent_key: str) -> None:
    await sarah.ok("add", "Old title")
    await sarah.ok("add", "Other parent")
    mark = await last_audit_id(db)
    data = await sarah.json(
        "edit",
        "1",
        "--title",
        "New title",
        "--description",
        "more",
        "--priority",
        "high",
        "--assign",
        "@claude-code",
        "--parent",
        "2",
        "--status",
        "in_progress",
    )
    assert data["title"] == "New title" and data["assignee"] == "@claude-code"
    assert data["parent_id"] == 2 and data["status"] == "in_progress"
    rows = await audit_rows(db, mark)
    # A status among the edits writes the entry its verb would (here: started).
    assert len(rows) == 1 and rows[0]["action"] == "started" and rows[0]["via"] == "cli"
    changes = rows[0]["details"]["changes"]
    assert changes["title"] == {"old": "Old title", "new": "New title"}
    assert changes["assignee"]["new"] == "@claude-code"
    cleared = await sarah.json("edit", "1", "--assign", "none", "--parent", "none")
    assert cleared["assignee"] is None and cleared["parent_id"] is None
    assert "Updated task #1" in (await sarah.ok("edit", "1", "--tags", "a,b")).stdout


async def test_edit_refusals_change_nothing(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Parent")
    await sarah.ok("subtask", "1", "Child")
    before = await snapshot(db)
    err = await sarah.refused("edit", "1", "--status", "review")
    assert "cannot move to review" in err
    err = await sarah.refused("edit", "1", "--parent", "2")
    assert "cycle" in err
    await sarah.refused("edit", "1", code=2)
    await sarah.refused("edit", "1", "--status", "done", code=2)
    await sarah.refused("edit", "7", "--title", "x")
    assert await snapshot(db) == before


async def test_delete(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Doomed")
    await sarah.ok("subtask", "1", "Child")
    await sarah.ok("add", "Kept")
    before = await snapshot(db)
    await sarah.refused("delete", "1", input="n\n")
    assert await snapshot(db) == before
    mark = await last_audit_id(db)
    result = await sarah.ok("delete", "1", input="y\n")
    assert "Deleted task #1 and 1 subtask(s)" in result.stdout
    assert "'Doomed' and everything under it?" in result.stdout
    rows = await audit_rows(db, mark)
    assert sorted((r["action"], r["entity_id"], r["via"]) for r in rows) == [
        ("deleted", 1, "cli"),
        ("deleted", 2, "cli"),
    ]
    assert await sarah.json("delete", "3", "-f") == {"deleted": [3]}
    assert await sarah.json("list") == []
    await sarah.refused("delete", "3", "-f")
    # The history of deleted tasks stays readable.
    assert [e["action"] for e in await sarah.json("audit", "task", "1")][-1] == "deleted"


async def test_upcoming_overdue_due(sarah: Cli, db: Database) -> None:
    soon = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    later = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
    await sarah.ok("add", "Soon", "--due", soon)
    await sarah.ok("add", "Later", "--due", later)
    await sarah.ok("add", "Late", "--due", "2001-01-01")
    await sarah.ok("add", "Late but done", "--due", "2001-01-01")
    await sarah.ok("start", "4")
    await sarah.ok("complete", "4")
    assert [t["id"] for t in await sarah.json("upcoming")] == [1]
    assert [t["id"] for t in await sarah.json("upcoming", "--days", "30")] == [1, 2]
    assert [t["id"] for t in await sarah.json("overdue")] == [3]
    assert "Late" in (await sarah.ok("overdue")).stdout
    assert (await sarah.json("due", "3"))["due_date"].startswith("2001-01-01")
    mark = await last_audit_id(db)
    data = await sarah.json("due", "3", "--date", "2031-05-05")
    assert data["due_date"].startswith("2031-05-05")
    assert "is due 2031-05-05" in (await sarah.ok("due", "3")).stdout
    assert (await sarah.json("due", "3", "--clear"))["due_date"] is None
    assert "No due date" in (await sarah.ok("due", "3")).stdout
    rows = await audit_rows(db, mark)
    assert [(r["action"], r["via"]) for r in rows] == [
        ("due_date_set", "cli"),
        ("due_date_cleared", "cli"),
    ]
    await sarah.refused("due", "3", "--date", "2031-01-01", "--clear", code=2)
    await sarah.refused("due", "3", "--date", "soon", code=2)

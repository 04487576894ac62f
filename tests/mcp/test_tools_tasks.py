"""Task tools in-process: create (with subtasks, all or nothing), read, list, edit, manage."""

from __future__ import annotations

from taskflow.core.db import Database
from taskflow.core.schemas import CreateTask, SubtaskSpec
from taskflow.core.services import tasks, workflow
from tests.mcp.conftest import (
    McpUser,
    Team,
    assert_audited,
    audit_tail,
    call,
    ok,
    refused_unchanged,
)


async def test_create_task_with_subtasks_is_audited(bot: McpUser, db: Database) -> None:
    out = ok(
        await call(
            bot,
            "create_task",
            title="Launch",
            priority="high",
            tags=["release"],
            due_date="2026-12-01",
            subtasks=[{"title": "Docs"}, {"title": "Blog post", "assignee": "@ann"}],
        )
    )
    assert out["task"]["title"] == "Launch" and out["task"]["version"] == 1
    assert [t["title"] for t in out["subtasks"]] == ["Docs", "Blog post"]
    assert out["subtasks"][1]["assignee"] == "@ann"
    entries = await audit_tail(db, 4)
    assert [e["action"] for e in entries] == ["subtask_added", "created", "created", "created"]
    for entry in entries:
        assert_audited(entry, entry["action"], "@claude-code")
    assert len({e["request_id"] for e in entries}) == 1  # one call, one request id


async def test_create_task_is_all_or_nothing(bot: McpUser, db: Database, team: Team) -> None:
    subtasks = [{"title": "fine"}, {"title": "broken", "assignee": "@ghost"}]
    message = await refused_unchanged(db, bot, "create_task", title="Launch", subtasks=subtasks)
    assert "no worker @ghost" in message


async def test_create_task_refusals(bot: McpUser, db: Database, team: Team) -> None:
    hidden = await refused_unchanged(db, bot, "create_task", title="Secret", project="web")
    assert "not found" in hidden and "Next: call list_projects()." in hidden
    empty = await refused_unchanged(db, bot, "create_task", title="   ")
    assert "title" in empty
    missing = await refused_unchanged(db, bot, "create_task")
    assert missing == "invalid input: title: Field required"


async def test_get_task_has_subtree_and_rolled_up_progress(
    bot: McpUser, db: Database, team: Team
) -> None:
    made = await tasks.create_task(
        db, team.bot, CreateTask(title="Parent", subtasks=[{"title": "a"}, {"title": "b"}])
    )
    first = made.subtree[0].id
    await workflow.start(db, team.bot, first)
    await workflow.complete(db, team.bot, first)
    out = ok(await call(bot, "get_task", task_id=made.task.id))
    assert out["task"]["rolled_up_progress"] == 50
    assert [(n["title"], n["depth"]) for n in out["subtree"]] == [("a", 1), ("b", 1)]
    assert out["subtree"][0]["status"] == "completed"
    message = await refused_unchanged(db, bot, "get_task", task_id=999)
    assert "task 999 not found" in message


async def test_get_task_pages_the_subtree(bot: McpUser, db: Database, team: Team) -> None:
    made = await tasks.create_task(
        db, team.bot, CreateTask(title="Root", subtasks=[{"title": t} for t in "abcde"])
    )
    deeper = await tasks.add_subtasks(db, team.bot, made.subtree[0].id, [SubtaskSpec(title="a1")])
    order = [made.subtree[0].id, deeper[0].id, *(n.id for n in made.subtree[1:])]
    seen, cursor, pages = [], None, 0
    while True:
        page = ok(await call(bot, "get_task", task_id=made.task.id, limit=2, cursor=cursor))
        pages += 1
        assert len(page["subtree"]) <= 2 and page["subtasks"] == [n.id for n in made.subtree]
        seen += [n["id"] for n in page["subtree"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (order, 3)
    top = ok(await call(bot, "get_task", task_id=made.task.id, depth=1))
    assert [n["id"] for n in top["subtree"]] == [n.id for n in made.subtree]
    first = ok(await call(bot, "get_task", task_id=made.task.id, limit=1))["next_cursor"]
    other = await tasks.create_task(db, team.bot, CreateTask(title="Other"))
    for arguments, says in (
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"limit": 1001}, "limit: Input should be less than or equal to 1000"),
        ({"depth": -1}, "depth: Input should be greater than or equal to 0"),
        ({"cursor": "garbage"}, "invalid cursor"),
    ):
        message = await refused_unchanged(db, bot, "get_task", task_id=made.task.id, **arguments)
        assert says in message, message
    message = await refused_unchanged(db, bot, "get_task", task_id=other.task.id, cursor=first)
    assert f"pages the subtree of task {made.task.id}, not of task {other.task.id}" in message


async def test_list_tasks_mine_lists_my_tasks(bot: McpUser, db: Database, team: Team) -> None:
    mine = await tasks.create_task(db, team.bot, CreateTask(title="Mine", assignee="@claude-code"))
    await tasks.create_task(db, team.sarah, CreateTask(title="Ann's", assignee="@ann"))
    await tasks.create_task(db, team.sarah, CreateTask(title="Nobody's", priority="critical"))

    default = ok(await call(bot, "list_tasks", mine=True))
    assert [t["id"] for t in default["items"]] == [mine.task.id]
    assert len(ok(await call(bot, "list_tasks"))["items"]) == 3  # no filter: every task
    everything = ok(await call(bot, "list_tasks", project="default"))
    assert len(everything["items"]) == 3
    assert "description" not in everything["items"][0]  # listings are summaries
    critical = ok(await call(bot, "list_tasks", priority="critical"))
    assert [t["title"] for t in critical["items"]] == ["Nobody's"]
    unassigned = ok(await call(bot, "list_tasks", no_assignee=True))
    assert [t["title"] for t in unassigned["items"]] == ["Nobody's"]


async def test_list_tasks_by_due_date_presence_and_title(
    bot: McpUser, db: Database, team: Team
) -> None:
    for title, due in (
        ("delta", None),
        ("Bravo", "2030-01-01"),
        ("alpha", None),
        ("Charlie", "2029-01-01"),
    ):
        await tasks.create_task(db, team.sarah, CreateTask(title=title, due_date=due))

    def titles(out: dict) -> list[str]:
        return [t["title"] for t in out["items"]]

    with_due = ok(await call(bot, "list_tasks", has_due_date=True, sort="title"))
    assert titles(with_due) == ["Bravo", "Charlie"]
    # has_due_date=false is a filter of its own: it lists every project's undated tasks, not
    # only the caller's (none of these are assigned to the bot).
    without = ok(await call(bot, "list_tasks", has_due_date=False, sort="title", reverse=True))
    assert titles(without) == ["delta", "alpha"]
    first = ok(await call(bot, "list_tasks", project="default", sort="title", limit=3))
    assert titles(first) == ["alpha", "Bravo", "Charlie"]
    rest = ok(
        await call(
            bot, "list_tasks", project="default", sort="title", limit=3, cursor=first["next_cursor"]
        )
    )
    assert titles(rest) == ["delta"] and rest["next_cursor"] is None
    back = ok(await call(bot, "list_tasks", project="default", sort="title", reverse=True, limit=2))
    more = ok(
        await call(
            bot,
            "list_tasks",
            project="default",
            sort="title",
            reverse=True,
            limit=2,
            cursor=back["next_cursor"],
        )
    )
    assert titles(back) + titles(more) == ["delta", "Charlie", "Bravo", "alpha"]
    message = await refused_unchanged(
        db, bot, "list_tasks", project="default", sort="title", cursor=first["next_cursor"][:-2]
    )
    assert "invalid cursor" in message
    bad_sort = await refused_unchanged(db, bot, "list_tasks", sort="name")
    assert "sort" in bad_sort


async def test_list_tasks_pages(bot: McpUser, db: Database, team: Team) -> None:
    for n in range(3):
        await tasks.create_task(db, team.bot, CreateTask(title=f"t{n}"))
    first = ok(await call(bot, "list_tasks", project="default", limit=2))
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = ok(
        await call(bot, "list_tasks", project="default", limit=2, cursor=first["next_cursor"])
    )
    assert [t["title"] for t in rest["items"]] == ["t2"] and rest["next_cursor"] is None
    message = await refused_unchanged(db, bot, "list_tasks", project="default", cursor="bogus")
    assert "invalid cursor" in message


async def test_update_task_changes_only_what_is_sent(
    bot: McpUser, db: Database, team: Team
) -> None:
    made = await tasks.create_task(
        db, team.bot, CreateTask(title="Old", description="keep me", due_date="2026-12-01")
    )
    task_id = made.task.id
    out = ok(await call(bot, "update_task", task_id=task_id, title="New", expected_version=1))
    assert out["title"] == "New" and out["version"] == 2
    [entry] = await audit_tail(db)
    assert_audited(entry, "updated", "@claude-code")
    assert entry["details"]["changes"] == {"title": {"old": "Old", "new": "New"}}

    cleared = ok(await call(bot, "update_task", task_id=task_id, due_date=None))
    assert cleared["version"] == 3
    full = ok(await call(bot, "get_task", task_id=task_id))["task"]
    assert full["due_date"] is None and full["description"] == "keep me"
    assert full["title"] == "New"


async def test_update_task_refusals(bot: McpUser, db: Database, team: Team) -> None:
    made = await tasks.create_task(db, team.bot, CreateTask(title="T"))
    task_id = made.task.id
    await workflow.start(db, team.sarah, task_id)  # version 2 now
    stale = await refused_unchanged(
        db, bot, "update_task", task_id=task_id, title="Mine", expected_version=1
    )
    assert "changed since you read it" in stale and "expected_version=2" in stale
    assert "nothing to change" in await refused_unchanged(db, bot, "update_task", task_id=task_id)
    cycle = await refused_unchanged(db, bot, "update_task", task_id=task_id, parent_id=task_id)
    assert "cycle" in cycle
    moved = await refused_unchanged(db, bot, "update_task", task_id=task_id, status="pending")
    # The core names the allowed moves as data; the agent reads the tools that make them.
    assert "Allowed: request_review, complete_task, block_task." in moved
    assert "Next: call" in moved
    assert "Next: call request_review(" in moved


async def test_add_subtasks_and_due_dates(bot: McpUser, db: Database, team: Team) -> None:
    task_id = (await tasks.create_task(db, team.bot, CreateTask(title="P"))).task.id
    added = ok(
        await call(
            bot,
            "add_subtasks",
            task_id=task_id,
            subtasks=[{"title": "x"}, {"title": "y"}],
            expected_version=1,
        )
    )
    assert [t["title"] for t in added["items"]] == ["x", "y"]
    assert_audited((await audit_tail(db))[0], "subtask_added", "@claude-code")

    due = ok(await call(bot, "set_due_date", task_id=task_id, due_date="2027-01-31"))
    assert due["id"] == task_id
    assert_audited((await audit_tail(db))[0], "due_date_set", "@claude-code")
    ok(await call(bot, "set_due_date", task_id=task_id, due_date=None))
    assert_audited((await audit_tail(db))[0], "due_date_cleared", "@claude-code")


async def test_delete_task_removes_the_subtree(bot: McpUser, db: Database, team: Team) -> None:
    made = await tasks.create_task(db, team.bot, CreateTask(title="P", subtasks=[{"title": "c"}]))
    out = ok(await call(bot, "delete_task", task_id=made.task.id))
    assert sorted(out["items"]) == sorted([made.task.id, made.subtree[0].id])
    entries = await audit_tail(db, 2)
    for entry in entries:
        assert_audited(entry, "deleted", "@claude-code")
    assert "not found" in await refused_unchanged(db, bot, "get_task", task_id=made.task.id)


async def test_split_task_tools_refuse_what_they_do_not_take(
    bot: McpUser, db: Database, team: Team
) -> None:
    task_id = (await tasks.create_task(db, team.bot, CreateTask(title="P"))).task.id
    stray = await refused_unchanged(
        db, bot, "delete_task", task_id=task_id, subtasks=[{"title": "x"}]
    )
    assert "unknown argument 'subtasks'" in stray
    typo = await refused_unchanged(db, bot, "set_due_date", task_id=task_id, due_dat="2027-01-01")
    assert "unknown argument 'due_dat': did you mean 'due_date'?" in typo
    assert "due_date: Field required" in typo
    assert "subtasks: Field required" in await refused_unchanged(
        db, bot, "add_subtasks", task_id=task_id
    )
    stale = await refused_unchanged(db, bot, "delete_task", task_id=task_id, expected_version=7)
    assert "changed since you read it" in stale
    assert ok(await call(bot, "get_task", task_id=task_id))["task"]["status"] == "pending"

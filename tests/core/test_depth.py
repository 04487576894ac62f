"""Unbounded nesting, bounded reads: deep chains and wide trees are read a page at a time,
depth-first, with rolled-up progress computed on read, and every page's work stays small."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from taskflow.core import driver
from taskflow.core.errors import Conflict, InvalidInput, ValidationFailed
from taskflow.core.handlers import subtree
from taskflow.core.handlers.task_rows import encode_cursor
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.core.conftest import refused
from tests.core.trees import expected_reading, insert_tree, subtree_rows

STATEMENTS_PER_PAGE = 4  # the task, the cursor's path, the page, the rolled-up progress


async def _web_id(db, owner) -> int:
    return (await projects.get_project(db, owner, "web")).id


async def _tree(db, owner, n: int, fanout: int) -> int:
    return await insert_tree(
        db, project_id=await _web_id(db, owner), creator_id=owner.worker_id, n=n, fanout=fanout
    )


def _reading(nodes) -> list[tuple[int, int, int]]:
    return [(n.id, n.depth, n.rolled_up_progress) for n in nodes]


async def _every_page(db, owner, root: int, **page: Any) -> tuple[list[Any], list[Any]]:
    """(every page, every subtree node in order) following next_cursor to the end."""
    pages = [await task_queries.get_task(db, owner, root, **page)]
    while pages[-1].next_cursor is not None:
        cursor = pages[-1].next_cursor
        pages.append(await task_queries.get_task(db, owner, root, **page, cursor=cursor))
    return pages, [n for p in pages for n in p.subtree]


@pytest.mark.parametrize(
    ("n", "fanout", "limit"),
    [(1_000, 1, 100), (10_000, 4, 1_000), (2_000, 3, 37), (500, 30, 7)],
    ids=["chain-1k", "tree-10k", "tree-2k-odd-pages", "wide-small-pages"],
)
async def test_paging_returns_every_node_once_depth_first_with_its_rollup(
    db, owner, n, fanout, limit
):
    root = await _tree(db, owner, n, fanout)
    expected = expected_reading(await subtree_rows(db, root), root)
    pages, nodes = await _every_page(db, owner, root, limit=limit)
    assert _reading(nodes) == expected[1:]
    assert len(pages) == -(-(n - 1) // limit)
    assert all(len(p.subtree) == limit for p in pages[:-1]) and pages[-1].next_cursor is None
    children = [node for node, depth, _ in expected if depth == 1]
    for page in pages:  # the task itself is the same on every page
        assert _reading([page.task]) == expected[:1]
        assert page.subtasks == children
    if fanout == 1:
        assert nodes[-1].depth == n - 1


async def test_depth_limits_the_levels_not_the_rollup(db, owner):
    root = await _tree(db, owner, 2_000, 3)
    expected = expected_reading(await subtree_rows(db, root), root)
    for depth in (0, 1, 3):
        pages, nodes = await _every_page(db, owner, root, limit=50, depth=depth)
        assert _reading(nodes) == [e for e in expected[1:] if e[1] <= depth]
        assert _reading([pages[0].task]) == expected[:1]


async def test_middle_of_a_chain_reads_only_its_subtree(db, owner):
    root = await _tree(db, owner, 1_000, 1)
    middle = root + 500
    pages, nodes = await _every_page(db, owner, middle, limit=1_000)
    assert len(pages) == 1 and pages[0].task.id == middle and pages[0].task.depth == 0
    assert [n.id for n in nodes] == list(range(middle + 1, root + 1_000))
    expected = expected_reading(await subtree_rows(db, middle), middle)
    assert _reading([pages[0].task, *nodes]) == expected


@asynccontextmanager
async def _every_statement(db) -> AsyncIterator[list[str]]:
    """Every statement the server is sent inside the block, on any connection, whether through
    SQLAlchemy or straight through asyncpg (connections made before are closed first)."""
    seen: list[str] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda q: seen.append(q.query))

    opened_by_lane = driver.open_connection

    async def open_logged(database: Any) -> Any:  # the driver's own connections, from the URL
        conn = await opened_by_lane(database)
        conn.add_query_logger(lambda q: seen.append(q.query))
        return conn

    await db.close()  # the engine's pool and the lane's connections
    event.listen(db.engine.sync_engine, "connect", on_connect)
    driver.open_connection = open_logged
    try:
        yield seen
    finally:
        driver.open_connection = opened_by_lane
        event.remove(db.engine.sync_engine, "connect", on_connect)
        await db.close()


@pytest.mark.parametrize("shape", [(10_000, 1), (10_000, 10)], ids=["chain-10k", "tree-10k"])
async def test_a_page_is_a_few_statements_in_one_snapshot_whatever_the_size(db, owner, shape):
    root = await _tree(db, owner, *shape)
    first = await task_queries.get_task(db, owner, root)
    assert len(first.subtree) == subtree.DEFAULT_LIMIT
    for cursor in (None, first.next_cursor):
        async with _every_statement(db) as statements:
            await task_queries.get_task(db, owner, root, cursor=cursor)  # connect, learn types
            statements.clear()
            page = await task_queries.get_task(db, owner, root, cursor=cursor)
        begin = max(i for i, q in enumerate(statements) if q.startswith("BEGIN"))
        assert "REPEATABLE READ" in statements[begin], statements
        assert statements[-1] == "COMMIT;", statements
        work = statements[begin + 1 : -1]
        assert len(work) <= STATEMENTS_PER_PAGE, work
        assert len(page.subtree) == subtree.DEFAULT_LIMIT


async def test_refused_pages_say_what_to_do(db, owner):
    root = await _tree(db, owner, 300, 2)
    other = await _tree(db, owner, 10, 2)
    first = await task_queries.get_task(db, owner, root, limit=10)
    page = task_queries.get_task
    for limit in (0, -1, subtree.MAX_LIMIT + 1, "many"):
        err = await refused(db, page(db, owner, root, limit=limit), InvalidInput)
        assert err.problems[0].field == "limit"
    err = await refused(db, page(db, owner, root, depth=-1), InvalidInput)
    assert err.problems[0].field == "depth"
    for bad in ("nope", "W10=", first.next_cursor[:-3], list_cursor(root)):
        err = await refused(db, page(db, owner, root, cursor=bad), ValidationFailed)
        assert err.message.startswith("invalid cursor: pass the next_cursor")
    err = await refused(db, page(db, owner, root, cursor="x" * 201), InvalidInput)
    assert err.problems[0].field == "cursor"
    err = await refused(db, page(db, owner, other, cursor=first.next_cursor), ValidationFailed)
    assert f"pages the subtree of task {root}, not of task {other}" in err.message


def list_cursor(task_id: int) -> str:
    """A cursor of `list_tasks` (another kind of page) naming the task."""
    return encode_cursor("created", "2026-01-01T00:00:00+00:00", task_id)


async def test_a_cursor_whose_node_left_the_subtree_is_a_conflict(db, owner):
    root = await _tree(db, owner, 300, 2)
    elsewhere = await _tree(db, owner, 3, 2)
    first = await task_queries.get_task(db, owner, root, limit=10)
    last = first.subtree[-1].id
    await tasks.edit_task(db, owner, last, EditTask(parent_id=elsewhere))
    err = await refused(
        db, task_queries.get_task(db, owner, root, cursor=first.next_cursor), Conflict
    )
    assert f"task {last}, where the previous page ended, is no longer in the subtree" in err.message
    assert "without a cursor" in err.message


async def test_the_recursive_steps_use_the_index_even_on_stale_statistics(db, owner):
    """Plans must not depend on luck: statistics taken while `tasks` was empty (a fresh database
    before a bulk import) must still walk the subtree by index, one range scan per step."""
    async with db.engine.begin() as conn:
        await conn.execute(text("ANALYZE tasks"))  # statistics of an (almost) empty table
    root = await _tree(db, owner, 30_000, 1)
    await _tree(db, owner, 30_000, 10)  # other tasks the walk must not scan
    for stale in (True, False):
        if not stale:
            async with db.engine.begin() as conn:
                await conn.execute(text("ANALYZE tasks"))
        for statement, params in (
            (subtree._PAGE, ([root], 101, 2**31 - 1)),
            (subtree._ROLLUP, ([root], [root])),
            (subtree._PATH, (root + 500, root)),
        ):
            scans = await _scans_of_tasks(db, statement, params)
            assert scans and "Seq Scan" not in scans, (stale, scans)


async def _scans_of_tasks(db, statement: str, params: tuple[Any, ...]) -> list[str]:
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        plan = await raw.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *params)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "tasks":
            found.append(node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


async def test_reparenting_a_deep_chain_into_itself_is_refused(db, owner):
    root = await _tree(db, owner, 1_000, 1)
    deepest = root + 999
    err = await refused(db, tasks.edit_task(db, owner, root, EditTask(parent_id=deepest)), Conflict)
    assert "cycle" in err.message


async def test_deleting_a_deep_chain_audits_every_task(db, owner):
    root = await _tree(db, owner, 5_000, 1)
    deleted = await tasks.delete_task(db, owner, root)
    assert deleted == list(range(root, root + 5_000))  # depth-first: the task, then down
    async with db.engine.connect() as conn:
        audited = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'deleted' AND entity_id >= :root"),
            {"root": root},
        )
        left = await conn.scalar(text("SELECT count(*) FROM tasks WHERE id >= :r"), {"r": root})
    assert (audited, left) == (5_000, 0)


async def test_rolled_up_progress_follows_the_workflow(db, owner):
    detail = await tasks.create_task(
        db,
        owner,
        CreateTask(title="release", project="web", subtasks=[{"title": "a"}, {"title": "b"}]),
    )
    a, b = detail.subtree
    c = await tasks.add_subtasks(
        db, owner, a.id, [SubtaskSpec(title="a1"), SubtaskSpec(title="a2")]
    )
    await workflow.start(db, owner, c[0].id)
    await workflow.progress(db, owner, c[0].id, 50)
    await workflow.start(db, owner, b.id)
    await workflow.complete(db, owner, b.id)
    got = await task_queries.get_task(db, owner, detail.task.id)
    rolled = {n.title: n.rolled_up_progress for n in (got.task, *got.subtree)}
    # a = mean(a1 50, a2 0) = 25; b completed = 100; release = mean(25, 100) = 62.5 -> 62
    assert rolled == {"release": 62, "a": 25, "a1": 50, "a2": 0, "b": 100}
    assert [n.title for n in got.subtree] == ["a", "a1", "a2", "b"]
    assert [n.depth for n in got.subtree] == [1, 2, 2, 1]
    # page by page, each node keeps the value the whole read gives it
    one = await _every_page(db, owner, detail.task.id, limit=1)
    assert {n.title: n.rolled_up_progress for n in one[1]} == {
        k: v for k, v in rolled.items() if k != "release"
    }
    assert {p.task.rolled_up_progress for p in one[0]} == {62}

"""Unbounded nesting: deep chains and wide trees are read in one query, depth-first, with
rolled-up progress computed on read."""

from __future__ import annotations

import pytest

from taskflow.core.errors import Conflict
from taskflow.core.schemas import CreateTask, EditTask, SubtaskSpec
from taskflow.core.services import projects, task_queries, tasks, workflow
from tests.core.conftest import count_queries, refused
from tests.core.trees import expected_reading, insert_tree, subtree_rows


async def _web_id(db, owner) -> int:
    return (await projects.get_project(db, owner, "web")).id


async def _read_in_one_query(db, owner, root):
    await task_queries.get_task(db, owner, root)  # warm the pool: connect-time queries excluded
    with count_queries(db) as statements:
        detail = await task_queries.get_task(db, owner, root)
    assert len(statements) == 1, statements
    assert "WITH RECURSIVE" in statements[0]
    return detail


def _reading(detail):
    return [(n.id, n.depth, n.rolled_up_progress) for n in (detail.task, *detail.subtree)]


@pytest.mark.parametrize(("n", "fanout"), [(1_000, 1), (10_000, 4)], ids=["chain-1k", "tree-10k"])
async def test_big_subtree_read_in_one_query(db, owner, n, fanout):
    root = await insert_tree(
        db, project_id=await _web_id(db, owner), creator_id=owner.worker_id, n=n, fanout=fanout
    )
    detail = await _read_in_one_query(db, owner, root)
    assert len(detail.subtree) == n - 1
    expected = expected_reading(await subtree_rows(db, root), root)
    assert _reading(detail) == expected
    if fanout == 1:
        assert detail.subtree[-1].depth == n - 1
    for parent, child in zip((detail.task, *detail.subtree), detail.subtree, strict=False):
        assert child.depth <= parent.depth + 1


async def test_middle_of_a_chain_reads_only_its_subtree(db, owner):
    root = await insert_tree(
        db, project_id=await _web_id(db, owner), creator_id=owner.worker_id, n=1_000, fanout=1
    )
    middle = root + 500
    detail = await _read_in_one_query(db, owner, middle)
    assert detail.task.id == middle and detail.task.depth == 0
    assert [n.id for n in detail.subtree] == list(range(middle + 1, root + 1_000))
    assert _reading(detail) == expected_reading(await subtree_rows(db, middle), middle)


async def test_reparenting_a_deep_chain_into_itself_is_refused(db, owner):
    root = await insert_tree(
        db, project_id=await _web_id(db, owner), creator_id=owner.worker_id, n=1_000, fanout=1
    )
    deepest = root + 999
    err = await refused(db, tasks.edit_task(db, owner, root, EditTask(parent_id=deepest)), Conflict)
    assert "cycle" in err.message


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

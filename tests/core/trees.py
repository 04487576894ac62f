"""Big task trees made in one INSERT ... SELECT (generate_series), and what reading them must give.

Making 10,000 tasks through the service layer would take minutes; the shape, not the path that
made it, is what the depth tests are about. The expected order and progress are computed here
independently of `task_queries`, from plain rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import text

from taskflow.core.db import Database

_RESERVE = text(
    "SELECT setval(pg_get_serial_sequence('tasks', 'id'), "
    "greatest((SELECT coalesce(max(id), 0) FROM tasks), "
    "(SELECT last_value FROM tasks_id_seq)) + :n) - :n"
)

_INSERT = text(
    """
    INSERT INTO tasks (id, project_id, parent_id, title, status, progress_percent, priority,
                       created_by_id)
    SELECT :base + g,
           :project_id,
           CASE WHEN g = 1 THEN CAST(:parent AS bigint) ELSE :base + (g - 2) / :fanout + 1 END,
           'node ' || g,
           CASE WHEN g % 7 = 0 THEN 'completed' WHEN g % 3 = 0 THEN 'in_progress'
                ELSE 'pending' END,
           (g * 37) % 101,
           (ARRAY['low', 'medium', 'high', 'critical'])[g % 4 + 1],
           :creator
    FROM generate_series(1, :n) AS g
    """
)


async def insert_tree(
    db: Database,
    *,
    project_id: int,
    creator_id: int,
    n: int,
    fanout: int,
    parent: int | None = None,
) -> int:
    """Insert `n` tasks as a `fanout`-ary tree (fanout 1 = a chain); return the root's id."""
    async with db.engine.begin() as conn:
        base = int(await conn.scalar(_RESERVE, {"n": n}))
        await conn.execute(
            _INSERT,
            {
                "base": base,
                "project_id": project_id,
                "parent": parent,
                "fanout": fanout,
                "n": n,
                "creator": creator_id,
            },
        )
    return base + 1


async def subtree_rows(db: Database, root: int) -> list[dict[str, Any]]:
    """Every task under `root` (inclusive) by plain id scans, no recursion in SQL."""
    async with db.engine.connect() as conn:
        rows = (
            (await conn.execute(text("SELECT id, parent_id, status, progress_percent FROM tasks")))
            .mappings()
            .all()
        )
    children: dict[int | None, list[int]] = defaultdict(list)
    for r in rows:
        children[r["parent_id"]].append(r["id"])
    keep, stack = set(), [root]
    while stack:
        node = stack.pop()
        keep.add(node)
        stack.extend(children[node])
    return [dict(r) for r in rows if r["id"] in keep]


def expected_reading(rows: list[dict[str, Any]], root: int) -> list[tuple[int, int, int]]:
    """(id, depth, rolled-up progress) depth-first, children by id: what get_task must return."""
    by_id = {r["id"]: r for r in rows}
    children: dict[int, list[int]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["id"] != root:
            children[r["parent_id"]].append(r["id"])
    order: list[tuple[int, int]] = []
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        order.append((node, depth))
        stack.extend((c, depth + 1) for c in reversed(children[node]))
    rolled: dict[int, int] = {}
    for node, _ in reversed(order):  # children are always after their parent in pre-order
        row = by_id[node]
        kids = children[node]
        if kids:  # completed or not: a parent reads 100% only once its subtasks do
            rolled[node] = round(sum(rolled[k] for k in kids) / len(kids))
        elif row["status"] == "completed":
            rolled[node] = 100
        else:
            rolled[node] = row["progress_percent"]
    return [(node, depth, rolled[node]) for node, depth in order]

"""A task's subtree a page at a time, depth-first, with rolled-up progress: bounded work per page.

A page is at most `limit` descendants in depth-first order (children by id), at most `depth`
levels below the task. Up to four statements read one, in one snapshot (`get_task` is declared
`snapshot=True`), none proportional to the whole subtree except where the answer needs it (the
task's own rolled-up progress, on the first page):

- `_ROOT`: the task, if the caller is a member of its project, with its direct children's ids.
- `_PATH` (later pages): the ids from the task down to the node the previous page ended at,
  walked up from that node by primary key.
- `_PAGE`: the page's rows. The walk starts where the previous page ended: that node's children,
  then its later siblings, then each ancestor's later siblings (`seeds`), keyed so that key order
  is depth-first order (`int4send(rank) || int8send(id) || int8send(child) ...`: the bytes
  compare as the numbers do). Each step of the walk keeps only the first `limit + 1` keys it
  finds: a node among the page's first `limit + 1` has fewer than `limit + 1` nodes before it
  in all, so fewer among those the same step finds, and no step can cut it (or, by the same
  argument, its ancestors) off. Every step is an index range scan over `ix_tasks_parent_id_id`
  (`parent_id = p ORDER BY id LIMIT n`), a shape no planner statistics turn into a table scan.
- `_ROLLUP`: rolled-up progress of the page's nodes (and, on the first page, the task's). The
  task's own value rides in the cursor to later pages, so one read shows one figure for it.

A cursor names the task, the last node of its page and the task's rolled-up progress. A node
moved out of the subtree or deleted since ends the read with a conflict: start again without one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import recurrence
from taskflow.core.actor import Actor
from taskflow.core.domain import TaskStatus
from taskflow.core.errors import Conflict, ValidationFailed
from taskflow.core.handlers import cursors
from taskflow.core.handlers.task_view import (
    TASK_COLUMNS_SQL,
    TASK_JOINS_SQL,
    blockers_of,
    not_found,
    task_fields,
)
from taskflow.core.schemas import TaskDetail, TaskNode

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
_ALL_LEVELS = 2**31 - 1
_KIND = "subtree"

_COLUMNS = TASK_COLUMNS_SQL
_NAMES = TASK_JOINS_SQL

# Through the session, not the driver: the unit of work's transaction (and its isolation) starts
# with a session's first statement, so this one opens it for those that follow on the driver.
_ROOT = text(
    f"""
    SELECT {_COLUMNS},
           ARRAY(SELECT c.id FROM tasks c WHERE c.parent_id = t.id ORDER BY c.id) AS subtasks
    FROM tasks t {_NAMES}
    WHERE t.id = :task_id
      AND EXISTS (SELECT 1 FROM project_members m
                  WHERE m.project_id = t.project_id AND m.worker_id = :worker_id)
      AND (CAST(:scope AS bigint[]) IS NULL OR t.project_id = ANY(CAST(:scope AS bigint[])))
    """
)

# The ids from the task ($2) down to the node a page ended at ($1, last); it starts with some
# other id when the node is no longer in the task's subtree.
_PATH = """
    WITH RECURSIVE up AS (
        SELECT t.id, t.parent_id, 0 AS n FROM tasks t WHERE t.id = $1
        UNION ALL
        SELECT t.id, t.parent_id, up.n + 1 FROM up JOIN tasks t ON t.id = up.parent_id
        WHERE up.id <> $2
    )
    SELECT array_agg(id ORDER BY n DESC) FROM up
"""

# $1 is the ids from the task to the node the page starts after (the task alone for the first
# page); $2 the page size plus one (a row more than asked says another page exists); $3 the
# deepest level to read.
_PAGE = f"""
    WITH RECURSIVE here AS (SELECT $1::bigint[] AS path),
    seeds AS (
        SELECT c.id, a.pos::int AS depth,
               int4send((cardinality(here.path) - a.pos)::int) || int8send(c.id) AS key, 1 AS n
        FROM here CROSS JOIN unnest(here.path) WITH ORDINALITY AS a(id, pos)
        CROSS JOIN LATERAL (
            SELECT t.id FROM tasks t
            WHERE t.parent_id = a.id AND t.id > coalesce(here.path[a.pos + 1], 0)
            ORDER BY t.id LIMIT $2
        ) c
        WHERE a.pos <= $3
    ),
    walk AS (
        (SELECT id, depth, key, n FROM seeds ORDER BY key LIMIT $2)
        UNION ALL
        SELECT x.id, x.depth, x.key, x.n FROM (
            SELECT c.id, w.depth + 1 AS depth, w.key || int8send(c.id) AS key, w.n + 1 AS n
            FROM walk w
            CROSS JOIN LATERAL (
                SELECT t.id FROM tasks t WHERE t.parent_id = w.id ORDER BY t.id LIMIT $2
            ) c
            WHERE w.depth < $3 AND w.n < $2
            ORDER BY key LIMIT $2
        ) x
    ),
    page AS (SELECT id, depth, key FROM walk ORDER BY key LIMIT $2)
    SELECT {_COLUMNS}, page.depth
    FROM page JOIN tasks t ON t.id = page.id {_NAMES}
    ORDER BY page.key
"""

# Rolled-up progress of the subtrees of $1, answered for the tasks $2: a leaf counts 100 when
# completed, else its own progress; a task with children the mean of its children's rolled-up
# values, rounded (half to even, as Python's round) at every level, completed or not: a parent
# completed while subtasks are open (allowed by its project, or imported from Phase 1) does not
# read 100% until they are done.
#
# `walk` visits the subtrees level by level. Its step is a subquery per task (`OFFSET 0` keeps the
# planner from flattening it into a join): the children of one task, which the index finds. As
# a plain join, a walk from many tasks was planned as a hash of the whole table, scanned to read
# a few thousand rows. `flat` lays the visited tasks out level after level in four arrays, `ends`
# says where each level ends. `up` then climbs one level per step, deepest first, each step one
# row holding the values of that level: a task's own, or the mean of its children's values in
# the level below. Each step reads only its two levels of the arrays (held once, as the values
# of uncorrelated subqueries), so a 10,000-deep chain costs 10,000 small steps and a wide tree a
# few large ones, never a scan of everything per level, whatever the shape.
_ROLLUP = """
    WITH RECURSIVE walk AS (
        SELECT t.id, t.parent_id, t.status = 'completed' AS done, t.progress_percent AS own,
               0 AS it
        FROM tasks t WHERE t.id = ANY($1::bigint[])
        UNION ALL
        SELECT c.id, c.parent_id, c.status = 'completed', c.progress_percent, w.it + 1
        FROM walk w
        CROSS JOIN LATERAL (SELECT * FROM tasks c WHERE c.parent_id = w.id OFFSET 0) c
    ),
    flat AS (
        SELECT array_agg(id ORDER BY it, id) AS ids, array_agg(parent_id ORDER BY it, id) AS pids,
               array_agg(done ORDER BY it, id) AS dones, array_agg(own ORDER BY it, id) AS owns
        FROM walk
    ),
    ends AS (
        SELECT array_agg(e ORDER BY it) AS e
        FROM (SELECT it, (sum(count(*)) OVER (ORDER BY it))::int AS e FROM walk GROUP BY it) x
    ),
    up(i, lo, hi, vals) AS (
        SELECT n, coalesce(e[n - 1], 0) + 1, e[n],
               (SELECT array_agg(CASE WHEN d THEN 100 ELSE o END ORDER BY ord)
                FROM unnest((SELECT dones FROM flat)[coalesce(e[n - 1], 0) + 1 : e[n]],
                            (SELECT owns FROM flat)[coalesce(e[n - 1], 0) + 1 : e[n]])
                     WITH ORDINALITY AS u(d, o, ord))
        FROM (SELECT e, cardinality(e) AS n FROM ends) l
        WHERE n > 0
        UNION ALL
        SELECT up.i - 1, coalesce(l.e[up.i - 2], 0) + 1, l.e[up.i - 1], (
            SELECT array_agg(CASE WHEN k.c IS NULL AND n.done THEN 100 WHEN k.c IS NULL THEN n.own
                                  ELSE round(k.s::float8 / k.c)::int END ORDER BY n.ord)
            FROM unnest((SELECT ids FROM flat)[coalesce(l.e[up.i - 2], 0) + 1 : l.e[up.i - 1]],
                        (SELECT dones FROM flat)[coalesce(l.e[up.i - 2], 0) + 1 : l.e[up.i - 1]],
                        (SELECT owns FROM flat)[coalesce(l.e[up.i - 2], 0) + 1 : l.e[up.i - 1]])
                 WITH ORDINALITY AS n(id, done, own, ord)
            LEFT JOIN (SELECT p, sum(v) AS s, count(*) AS c
                       FROM unnest((SELECT pids FROM flat)[up.lo : up.hi], up.vals) AS u(p, v)
                       GROUP BY p) k ON k.p = n.id)
        FROM up, ends l
        WHERE up.i > 1
    )
    SELECT n.id, n.v FROM up, unnest((SELECT ids FROM flat)[up.lo : up.hi], up.vals) AS n(id, v)
    JOIN unnest($2::bigint[]) AS w(id) ON w.id = n.id
"""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the task paged, its last node, and the task's rolled-up progress."""

    task_id: int
    after: int
    rolled_up: int

    def encode(self) -> str:
        return cursors.pack(_KIND, self.task_id, self.after, self.rolled_up)


def decode(cursor: str, task_id: int) -> Position:
    """The position a cursor names; refused if malformed or made for another task's subtree."""
    try:
        kind, root, after, rolled_up = cursors.unpack(cursor)
        if kind != _KIND or not (cursors.is_id(root) and cursors.is_id(after)):
            raise ValueError(kind)
        if type(rolled_up) is not int or not 0 <= rolled_up <= 100:
            raise ValueError(rolled_up)
    except (ValueError, TypeError):
        raise ValidationFailed(
            "invalid cursor: pass the next_cursor of the previous page of this task unchanged",
            field="cursor",
        ) from None
    if root != task_id:
        raise ValidationFailed(
            f"this cursor pages the subtree of task {root}, not of task {task_id}: read task "
            f"{root} with it, or leave it out to start at the first page",
            field="cursor",
        )
    return Position(root, after, rolled_up)


async def read_page(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    depth: int | None = None,
) -> TaskDetail:
    """The task with one page of its subtree (see the module docstring).

    After `_ROOT` the statements run on the driver's connection, inside the session's
    transaction: a page's rows go from asyncpg's records straight into one validation of all its
    nodes, without the per-row result processing of the ORM layer (a third of a page's time when
    it was used).
    """
    position = decode(cursor, task_id) if cursor else None
    found_root = await session.execute(
        _ROOT,
        {"task_id": task_id, "worker_id": actor.worker_id, "scope": actor.scopes.listed()},
    )
    root = found_root.mappings().first()
    if root is None:
        raise not_found(task_id)
    conn = await _driver(session)
    path = [task_id] if position is None else await _path(conn, position)
    found = await conn.fetch(_PAGE, path, limit + 1, _ALL_LEVELS if depth is None else depth)
    page = found[:limit]
    rolled = await _rolled_up(conn, root, page, first=position is None)
    root_rolled = rolled[task_id] if position is None else position.rolled_up
    next_cursor = None
    if len(found) > limit:
        next_cursor = Position(task_id, page[-1]["id"], root_rolled).encode()
    nodes = _NODES.validate_python(
        [_fields(root, 0, root_rolled), *(_fields(r, r["depth"], rolled[r["id"]]) for r in page)]
    )
    return TaskDetail(
        task=nodes[0], subtree=nodes[1:], subtasks=root["subtasks"], next_cursor=next_cursor
    )


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, in its transaction once a statement has run."""
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def _path(conn: Any, position: Position) -> list[int]:
    path = await conn.fetchval(_PATH, position.after, position.task_id)
    if not path or path[0] != position.task_id:
        raise Conflict(
            f"task {position.after}, where the previous page ended, is no longer in the subtree "
            f"of task {position.task_id} (moved or deleted): read again without a cursor",
            field="cursor",
        )
    return list(path)


async def _rolled_up(
    conn: Any, root: Mapping[str, Any], page: Sequence[Mapping[str, Any]], *, first: bool
) -> dict[int, int]:
    """Rolled-up progress of the page's nodes, and of the task itself on the first page.

    The walk starts at each node whose parent is not on the page (the page is a contiguous run
    of the depth-first order, so those nodes' subtrees hold every other node of it).
    """
    on_page = {row["id"] for row in page}
    if first:
        on_page.add(root["id"])
    seeds = [root["id"]] if first else []
    seeds += [row["id"] for row in page if row["parent_id"] not in on_page]
    if not seeds:
        return {}
    return dict(await conn.fetch(_ROLLUP, seeds, list(on_page)))


_NODES: TypeAdapter[list[TaskNode]] = TypeAdapter(list[TaskNode])


def _fields(record: Mapping[str, Any], depth: int, rolled_up: int) -> dict[str, Any]:
    """A record of `_COLUMNS` (and `depth` or `subtasks`) as a TaskNode's fields."""
    fields = dict(record)
    fields.pop("subtasks", None)
    fields["blocked_by"] = blockers_of(fields.pop("blockers"))
    fields["parent_task_id"] = fields["parent_id"]
    if fields["recurrence"] is not None:
        fields["recurrence_legacy"] = recurrence.is_legacy(fields["recurrence"])
    fields["depth"] = depth
    fields["rolled_up_progress"] = rolled_up
    return fields


def alone(row: Mapping[str, Any]) -> TaskDetail:
    """A task known to have no subtask (just made), without reading anything."""
    done = row["status"] == TaskStatus.COMPLETED.value
    rolled_up = 100 if done else row["progress_percent"]
    return TaskDetail(
        task=TaskNode.model_validate(
            {**task_fields(row), "depth": 0, "rolled_up_progress": rolled_up}
        )
    )


# ------------------------------------------------------------------ the whole subtree, to delete

_WHOLE = text(
    """
    WITH RECURSIVE sub AS (
        SELECT t.id FROM tasks t WHERE t.id = :task_id
        UNION ALL
        SELECT c.id FROM sub
        CROSS JOIN LATERAL (SELECT c.id FROM tasks c WHERE c.parent_id = sub.id OFFSET 0) c
    )
    SELECT t.id, t.parent_id, t.title, t.status, a.handle AS assignee
    FROM sub JOIN tasks t ON t.id = sub.id LEFT JOIN workers a ON a.id = t.assignee_id
    """
)


async def whole(session: AsyncSession, task_id: int) -> list[Mapping[str, Any]]:
    """Every task of the subtree (the task first), depth-first with children by id: what a delete
    audits, one row per task. The order is made here from parent ids rather than by sorting on
    id paths in SQL, which for a 10,000-deep chain would build 50 million path elements."""
    found = (await session.execute(_WHOLE, {"task_id": task_id})).mappings().all()
    children: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    top = None
    for row in found:
        if row["id"] == task_id:
            top = row
        else:
            children[row["parent_id"]].append(row)
    if top is None:
        return []
    ordered, stack = [], [top]
    while stack:
        row = stack.pop()
        ordered.append(row)
        stack.extend(sorted(children[row["id"]], key=lambda r: r["id"], reverse=True))
    return ordered

"""Reading tasks: a task with its subtree in one query, filtered pages, rolled-up progress."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, or_, select, text, tuple_
from sqlalchemy.orm import aliased

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Priority, TaskStatus
from taskflow.core.errors import NotFound, ValidationFailed
from taskflow.core.models import Project, ProjectMember, Task, Worker
from taskflow.core.schemas import Page, TaskDetail, TaskFilter, TaskNode, TaskOut
from taskflow.core.services.access import project_with_role

_assignee = aliased(Worker, name="assignee_w")
_creator = aliased(Worker, name="creator_w")

TASK_COLUMNS = (
    Task.id,
    Task.project_id,
    Task.parent_id,
    Task.title,
    Task.description,
    Task.status,
    Task.priority,
    Task.progress_percent,
    Task.tags,
    Task.due_date,
    Task.recurrence,
    Task.assignee_id,
    Task.created_by_id,
    Task.started_at,
    Task.completed_at,
    Task.version,
    Task.created_at,
    Task.updated_at,
    Project.slug.label("project"),
    _assignee.handle.label("assignee"),
    _creator.handle.label("created_by"),
)


# Read once: `TaskOut.model_fields` is a computed class property in pydantic >= 2.11, evaluated
# on every access; per row it added a call and a dict per node of a 100,000-node subtree.
# `parent_task_id` is not a column: it is `parent_id` under the seed's name (see `task_fields`).
TASK_FIELDS: tuple[str, ...] = tuple(f for f in TaskOut.model_fields if f != "parent_task_id")


# Built once: every task write reads its row back through it. A Select is generative (`.where`
# and friends return a copy), so sharing one is safe.
_TASK_SELECT = (
    select(*TASK_COLUMNS)
    .join(Project, Project.id == Task.project_id)
    .outerjoin(_assignee, _assignee.id == Task.assignee_id)
    .join(_creator, _creator.id == Task.created_by_id)
)


def task_select() -> Any:
    """Tasks with the handles and slug a reader wants instead of bare ids."""
    return _TASK_SELECT


def task_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A task row (from any query or RETURNING that has the task columns and the handles) as
    TaskOut's fields: the one place that names `parent_id` again as `parent_task_id`."""
    fields = {k: row[k] for k in TASK_FIELDS}
    fields["parent_task_id"] = fields["parent_id"]
    return fields


def task_out(row: Mapping[str, Any]) -> TaskOut:
    return TaskOut.model_validate(task_fields(row))


def not_found(task_id: int) -> NotFound:
    return NotFound(
        f"task {task_id} not found, or it is in a project you are not a member of: "
        "list tasks to find ids",
        entity="task",
    )


_SUBTREE = text(
    """
    WITH RECURSIVE sub AS (
        SELECT t.id, 0 AS depth, ARRAY[t.id] AS path
        FROM tasks t
        WHERE t.id = :task_id
          AND EXISTS (SELECT 1 FROM project_members m
                      WHERE m.project_id = t.project_id AND m.worker_id = :worker_id)
        UNION ALL
        SELECT c.id, s.depth + 1, s.path || c.id
        FROM tasks c JOIN sub s ON c.parent_id = s.id
    )
    SELECT t.id, t.project_id, t.parent_id, t.title, t.description, t.status, t.priority,
           t.progress_percent, t.tags, t.due_date, t.recurrence, t.assignee_id, t.created_by_id,
           t.started_at, t.completed_at, t.version, t.created_at, t.updated_at,
           p.slug AS project, a.handle AS assignee, cb.handle AS created_by, sub.depth
    FROM sub
    JOIN tasks t ON t.id = sub.id
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers a ON a.id = t.assignee_id
    JOIN workers cb ON cb.id = t.created_by_id
    ORDER BY sub.path
    """
)


def rolled_up(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each node's progress including its descendants, from a depth-first ordered subtree.

    A completed task counts as 100; a leaf counts its own progress; a parent counts the mean of
    its children's rolled-up values, so every branch weighs the same whatever its size.
    """
    index = {row["id"]: i for i, row in enumerate(rows)}
    sums = [0.0] * len(rows)
    counts = [0] * len(rows)
    result = [0] * len(rows)
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        if row["status"] == TaskStatus.COMPLETED:
            value = 100
        elif counts[i]:
            value = round(sums[i] / counts[i])
        else:
            value = int(row["progress_percent"])
        result[i] = value
        parent = index.get(row["parent_id"])
        if parent is not None and i != 0:
            sums[parent] += value
            counts[parent] += 1
    return result


async def get_task(db: Database, actor: Actor, task_id: int) -> TaskDetail:
    """A task and all its descendants, read in one recursive query."""
    async with db.transaction() as session:
        rows = (
            (await session.execute(_SUBTREE, {"task_id": task_id, "worker_id": actor.worker_id}))
            .mappings()
            .all()
        )
    if not rows:
        raise not_found(task_id)
    return detail_from_rows(rows)


def detail_from_rows(rows: Sequence[Mapping[str, Any]]) -> TaskDetail:
    progress = rolled_up(rows)
    nodes = [
        TaskNode.model_validate(
            {**task_fields(row), "depth": row["depth"], "rolled_up_progress": p}
        )
        for row, p in zip(rows, progress, strict=True)
    ]
    children = [node.id for node in nodes[1:] if node.depth == 1]
    return TaskDetail(task=nodes[0], subtree=nodes[1:], subtasks=children)


# ------------------------------------------------------------------ listing

_FAR_FUTURE = text("'infinity'::timestamptz")


def _sort_expr(sort: str) -> ColumnElement[Any]:
    """The sort key; every sort is made total by the task id after it (see `list_tasks`).

    Titles sort ignoring case, in code point order (`COLLATE "C"`), so the order and the keyset
    comparison of a title cursor are the same on every server whatever its default collation.
    """
    if sort == "updated":
        return Task.updated_at
    if sort == "priority":
        return Task.priority_rank
    if sort == "due_date":
        return func.coalesce(Task.due_date, _FAR_FUTURE)
    if sort == "title":
        return func.lower(Task.title).collate("C")
    return Task.created_at


def encode_cursor(sort: str, value: Any, last_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat() if value.year < 9999 else "infinity"
    raw = json.dumps([sort, value, last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_PRIORITY_RANKS = range(len(Priority))  # 0 (critical) to 3 (low), as `priority_rank` has them
_BIGINT_MAX = 2**63 - 1


def _cursor_value(sort: str, value: Any) -> Any:
    """A cursor's sort value, checked to have the type its sort compares (else ValueError).

    A forged or mangled cursor must be refused here as invalid input: passed on, a string
    compared with a smallint (or a number with a timestamp) fails inside PostgreSQL instead.
    """
    if sort == "title":
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(value)
        value.encode()  # a lone surrogate from a forged JSON escape: UnicodeEncodeError
        return value
    if sort == "priority":
        if type(value) is not int or value not in _PRIORITY_RANKS:
            raise ValueError(value)
        return value
    if sort == "due_date" and value == "infinity":
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # the server always writes an offset
        raise ValueError(value)
    return moment


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    """The sort value and id a page ended at; a cursor from another sort is refused."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, value, last_id = json.loads(base64.urlsafe_b64decode(padded))
        if kind != sort or type(last_id) is not int or not 0 < last_id <= _BIGINT_MAX:
            raise ValueError(kind)
        return _cursor_value(sort, value), last_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationFailed(
            "invalid cursor: pass the next_cursor of the previous page unchanged, with the same "
            "sort",
            field="cursor",
        ) from None


def _filters(f: TaskFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if f.status:
        conds.append(Task.status == f.status.value)
    if f.priority:
        conds.append(Task.priority == f.priority.value)
    if f.assignee:
        conds.append(_assignee.handle == f.assignee)
    if f.no_assignee:
        conds.append(Task.assignee_id.is_(None))
    if f.created_by:
        conds.append(_creator.handle == f.created_by)
    if f.parent_id is not None:
        conds.append(Task.parent_id == f.parent_id)
    if f.top_level:
        conds.append(Task.parent_id.is_(None))
    if f.tags:
        conds.append(Task.tags.contains(f.tags))
    if f.due_before:
        conds.append(Task.due_date < f.due_before)
    if f.due_after:
        conds.append(Task.due_date > f.due_after)
    if f.has_due_date is not None:
        conds.append(Task.due_date.is_not(None) if f.has_due_date else Task.due_date.is_(None))
    if f.open_only:
        conds.append(Task.status != TaskStatus.COMPLETED.value)
    if f.search:
        pattern = "%" + f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(or_(Task.title.ilike(pattern), Task.description.ilike(pattern)))
    return conds


async def list_tasks(db: Database, actor: Actor, f: TaskFilter) -> Page[TaskOut]:
    """One page of tasks, keyset-paginated so pages stay fast and stable under inserts."""
    key = _sort_expr(f.sort)
    stmt = task_select().where(*_filters(f))
    async with db.transaction() as session:
        if f.project is not None:
            project, _ = await project_with_role(session, actor, f.project)
            stmt = stmt.where(Task.project_id == project.id)
        else:
            mine = select(ProjectMember.project_id).where(
                ProjectMember.worker_id == actor.worker_id
            )
            stmt = stmt.where(Task.project_id.in_(mine))
        if f.cursor:
            value, last_id = decode_cursor(f.cursor, f.sort)
            bound = _FAR_FUTURE if value == "infinity" else literal(value)
            after = (
                tuple_(key, Task.id) < tuple_(bound, last_id)
                if f.reverse
                else (tuple_(key, Task.id) > tuple_(bound, last_id))
            )
            stmt = stmt.where(after)
        order = (key.desc(), Task.id.desc()) if f.reverse else (key.asc(), Task.id.asc())
        stmt = stmt.add_columns(key.label("_sort")).order_by(*order).limit(f.limit + 1)
        rows = (await session.execute(stmt)).mappings().all()
    items = [task_out(r) for r in rows[: f.limit]]
    next_cursor = None
    if len(rows) > f.limit:
        last = rows[f.limit - 1]
        next_cursor = encode_cursor(f.sort, last["_sort"], last["id"])
    return Page[TaskOut](items=items, next_cursor=next_cursor)

"""Listing tasks: one statement on the driver, built from the filter, with no ORM.

`list_tasks` is the read every surface calls most (the CLI's `taskflow list`, the board's
`GET /api/tasks`, an agent's `list_tasks`). It runs as one static-text statement with `$n`
parameters, which asyncpg prepares once per connection, so a plain `taskflow list` imports no
SQLAlchemy (its import alone cost more than the rest of the command: issue 12). The columns are
those a subtree's pages read too (`task_view.TASK_COLUMNS_SQL`); a test compares this listing
with the ORM's read of the same tasks, so the two cannot drift apart.

Pages are keyset-paginated: the sort key and the task id after it make every order total, and a
cursor is the (key, id) the page ended at, so pages stay fast and stable under inserts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import Role, TaskStatus, is_number
from taskflow.core.handlers.task_view import (
    ANY_LEASE_EXPIRED,
    TASK_COLUMNS_SQL,
    TASK_JOINS_SQL,
    decode_cursor,
    encode_cursor,
    open_blocker_sql,
    task_out,
)
from taskflow.core.permissions import project_not_found, role_in_found
from taskflow.core.schemas import Page, TaskFilter, TaskOut, TaskSummary
from taskflow.core.uow import UnitOfWork

READS = "core"
"""The toolset of the everyday task tools: create, read, list, update (`handlers.tasks` too)."""


class ListTasks(TaskFilter):
    mine: bool = False


@declare(
    ListTasks,
    toolset=READS,
    read_only=True,
    mcp="list_tasks",
    rest=(
        Route("GET", "/api/tasks"),
        Route("GET", "/api/projects/{project}/tasks", name="list_project_tasks"),
    ),
    cli="list",
    mcp_output=Page[TaskSummary],
)
async def list_tasks(cmd: ListTasks, uow: UnitOfWork, actor: Actor) -> Page[TaskOut]:
    """Find tasks in your projects a page at a time (mine=true: yours, reviews too); pass
    next_cursor back as cursor for more."""
    if (await uow.read(ANY_LEASE_EXPIRED))[0]["any"]:
        from taskflow.core.handlers import leases  # here: a lease rarely ran out meanwhile

        await leases.release_expired(uow.session, actor, "list_tasks")
    project_id = None if cmd.project is None else await _project_id(uow, actor, cmd.project)
    sql, args = listing(cmd, actor, project_id)
    found = await uow.read(sql, *args)
    items = [task_out(r) for r in found[: cmd.limit]]
    next_cursor = None
    if len(found) > cmd.limit:
        last = found[cmd.limit - 1]
        next_cursor = encode_cursor(cmd.sort, last["_sort"], last["id"])
    return Page[TaskOut](items=items, next_cursor=next_cursor)


# The slug wins over an id when an all-digit slug (`2024`) is both (as `access.project_with_role`).
_PROJECT = """
SELECT p.id, p.slug, m.role
FROM projects p
LEFT JOIN project_members m ON m.project_id = p.id AND m.worker_id = $1
WHERE p.slug = $2 OR p.id = $3
ORDER BY p.slug = $2 DESC
LIMIT 1
"""


async def _project_id(uow: UnitOfWork, actor: Actor, ref: str) -> int:
    """The project named by slug or id, if the caller may read it (else not found)."""
    by_id = int(ref) if is_number(ref) else None
    rows = await uow.read(_PROJECT, actor.worker_id, ref, by_id)
    if not rows:
        raise project_not_found(ref)
    row = rows[0]
    role_in_found(actor, ref, row["id"], row["slug"], row["role"], Role.VIEWER)
    return int(row["id"])


_SELECT = f"SELECT {TASK_COLUMNS_SQL}, {{sort}} AS _sort\nFROM tasks t {TASK_JOINS_SQL}"

_FAR_FUTURE = "'infinity'::timestamptz"

# Titles sort ignoring case, in code point order (`COLLATE "C"`), so the order and the keyset
# comparison of a title cursor are the same on every server whatever its default collation.
SORT_KEYS = {
    "created": "t.created_at",
    "updated": "t.updated_at",
    "priority": "t.priority_rank",
    "due_date": f"coalesce(t.due_date, {_FAR_FUTURE})",
    "title": 'lower(t.title) COLLATE "C"',
}

_OPEN_BLOCKER = open_blocker_sql("t")


class _Params:
    """Positional parameters as they are added: `add(value)` is the `$n` that stands for it."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _like(text: str) -> str:
    """`%text%` with LIKE's own characters taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search(pattern: str) -> str:
    return f"(t.title ILIKE {pattern} OR t.description ILIKE {pattern})"


# Each filter field that narrows by one condition: (field, condition given a parameter maker).
_CONDITIONS: tuple[tuple[str, Callable[[Any, _Params], str]], ...] = (
    ("status", lambda v, p: f"t.status = {p.add(v.value)}"),
    ("priority", lambda v, p: f"t.priority = {p.add(v.value)}"),
    ("assignee", lambda v, p: f"a.handle = {p.add(v)}"),
    ("no_assignee", lambda v, p: "t.assignee_id IS NULL"),
    ("created_by", lambda v, p: f"cb.handle = {p.add(v)}"),
    ("top_level", lambda v, p: "t.parent_id IS NULL"),
    ("tags", lambda v, p: f"t.tags @> {p.add(list(v))}::text[]"),
    ("due_before", lambda v, p: f"t.due_date < {p.add(v)}"),
    ("due_after", lambda v, p: f"t.due_date > {p.add(v)}"),
    ("open_only", lambda v, p: f"t.status <> '{TaskStatus.COMPLETED.value}'"),
    ("required_capabilities", lambda v, p: f"t.required_capabilities @> {p.add(list(v))}::text[]"),
    ("ready", lambda v, p: f"t.status <> '{TaskStatus.COMPLETED.value}' AND NOT {_OPEN_BLOCKER}"),
    ("blocked", lambda v, p: _OPEN_BLOCKER),
    ("search", lambda v, p: _search(p.add(_like(v)))),
)


def _conditions(f: ListTasks, actor: Actor, project_id: int | None, p: _Params) -> list[str]:
    conds = [make(getattr(f, field), p) for field, make in _CONDITIONS if getattr(f, field)]
    if f.parent_id is not None:
        conds.append(f"t.parent_id = {p.add(f.parent_id)}")
    if f.has_due_date is not None:
        conds.append(f"t.due_date IS {'NOT ' if f.has_due_date else ''}NULL")
    if f.mine:
        me = p.add(actor.worker_id)
        conds.append(f"(t.assignee_id = {me} OR t.reviewer_id = {me})")
    if project_id is not None:
        conds.append(f"t.project_id = {p.add(project_id)}")
    else:
        conds.append(
            "t.project_id IN (SELECT project_id FROM project_members "
            f"WHERE worker_id = {p.add(actor.worker_id)})"
        )
        listed = actor.scopes.listed()
        if listed is not None:
            conds.append(f"t.project_id = ANY({p.add(sorted(listed))}::bigint[])")
    if f.cursor:
        conds.append(_after(f, p))
    return conds


def _after(f: ListTasks, p: _Params) -> str:
    """The keyset condition: strictly past the (sort key, id) the last page ended at."""
    value, last_id = decode_cursor(f.cursor or "", f.sort)
    bound = _FAR_FUTURE if value == "infinity" else p.add(value)
    return f"({SORT_KEYS[f.sort]}, t.id) {'<' if f.reverse else '>'} ({bound}, {p.add(last_id)})"


def listing(f: ListTasks, actor: Actor, project_id: int | None) -> tuple[str, list[Any]]:
    """The statement and its parameters for one page (one row more than the page, to tell
    whether another follows)."""
    p = _Params()
    conds = _conditions(f, actor, project_id, p)
    key = SORT_KEYS[f.sort]
    direction = "DESC" if f.reverse else "ASC"
    sql = (
        _SELECT.format(sort=key)
        + ("WHERE " + "\n  AND ".join(conds) + "\n" if conds else "")
        + f"ORDER BY {key} {direction}, t.id {direction}\nLIMIT {p.add(f.limit + 1)}"
    )
    return sql, p.values

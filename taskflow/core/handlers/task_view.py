"""A task as readers see it, from any row that has its columns: no SQLAlchemy here.

Every read of tasks (one task, a page of a listing, a page of a subtree, the row a write
returns) turns its rows into `TaskOut` through `task_fields`, and pages through the cursors
below; the plain listing (`taskflow.core.handlers.task_list`) runs on the driver alone, so this
module stays free of the ORM.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskflow.core import recurrence
from taskflow.core.domain import Priority
from taskflow.core.errors import NotFound, ValidationFailed
from taskflow.core.handlers import cursors
from taskflow.core.schemas import TaskOut


def blockers_sql(task: str) -> str:
    """The blockers of the task aliased `task`, as one bigint array in id order: a blocker's id,
    negated once it is completed (ids are positive, so the sign says `done`). One probe of the
    dependency table's primary key per task read."""
    return (
        "ARRAY(SELECT CASE WHEN b.status = 'completed' THEN -b.id ELSE b.id END "
        "FROM task_dependencies d JOIN tasks b ON b.id = d.blocker_id "
        f"WHERE d.task_id = {task}.id ORDER BY d.blocker_id)"
    )


def open_blocker_sql(task: str) -> str:
    """Whether the task aliased `task` waits for a blocker not yet completed (the listing's
    `ready`/`blocked` filters, and which tasks a claim may take)."""
    return (
        "EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks b ON b.id = d.blocker_id "
        f"WHERE d.task_id = {task}.id AND b.status <> 'completed')"
    )


ANY_LEASE_EXPIRED = """
SELECT EXISTS (
    SELECT 1 FROM tasks WHERE lease_expires_at <= now() AND status = 'in_progress'
) AS any
"""
"""Whether any claim's lease ran out (a partial index answers it): the one-row check before
the release (`handlers.leases`) that every listing, read and claim applies."""


def blockers_of(encoded: Any) -> list[dict[str, Any]]:
    """`blockers_sql`'s array as `TaskOut.blocked_by` (none: a row read without it)."""
    return [{"id": abs(v), "done": v < 0} for v in encoded or ()]


TASK_COLUMNS_SQL = f"""
    t.id, t.project_id, t.parent_id, t.title, t.description, t.status, t.priority,
    t.progress_percent, t.tags, t.due_date, t.recurrence, t.assignee_id, t.created_by_id,
    t.started_at, t.completed_at, t.required_capabilities, t.lease_expires_at, t.version,
    t.created_at, t.updated_at, p.slug AS project, a.handle AS assignee, cb.handle AS created_by,
    r.handle AS reviewer, {blockers_sql("t")} AS blockers
"""
"""Every column `task_fields` reads, for SQL written as text over `tasks t` and the joins
below (the listing, a subtree's pages); the ORM's reads name the same as mapped columns
(`task_rows.TASK_COLUMNS`), and a test compares the two."""
TASK_JOINS_SQL = """
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers a ON a.id = t.assignee_id
    JOIN workers cb ON cb.id = t.created_by_id
    LEFT JOIN workers r ON r.id = t.reviewer_id
"""


# Read once: `TaskOut.model_fields` is a computed class property in pydantic >= 2.11, evaluated
# on every access; per row it added a call and a dict per node of a 100,000-node subtree.
# `parent_task_id` is not a column: it is `parent_id` under the seed's name (see `task_fields`).
# `recurrence_legacy` is not a column either: it is worked out from `recurrence`, and
# `blocked_by` from the dependencies.
_COMPUTED = ("parent_task_id", "recurrence_legacy", "blocked_by")
TASK_FIELDS: tuple[str, ...] = tuple(f for f in TaskOut.model_fields if f not in _COMPUTED)


def task_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A task row (from any query or RETURNING that has the task columns and the handles) as
    TaskOut's fields: the one place that names `parent_id` again as `parent_task_id`."""
    fields = {k: row[k] for k in TASK_FIELDS}
    fields["parent_task_id"] = fields["parent_id"]
    if fields["recurrence"] is not None:
        fields["recurrence_legacy"] = recurrence.is_legacy(fields["recurrence"])
    fields["blocked_by"] = blockers_of(row.get("blockers"))
    return fields


def task_out(row: Mapping[str, Any]) -> TaskOut:
    return TaskOut.model_validate(task_fields(row))


def not_found(task_id: int) -> NotFound:
    return NotFound(
        f"task {task_id} not found, or it is in a project you are not a member of: "
        "list tasks to find ids",
        entity="task",
    )


def encode_cursor(sort: str, value: Any, last_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat() if value.year < 9999 else "infinity"
    return cursors.pack(sort, value, last_id)


_PRIORITY_RANKS = range(len(Priority))  # 0 (critical) to 3 (low), as `priority_rank` has them


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
        kind, value, last_id = cursors.unpack(cursor)
        if kind != sort or not cursors.is_id(last_id):
            raise ValueError(kind)
        return _cursor_value(sort, value), last_id
    except (ValueError, TypeError):
        raise ValidationFailed(
            "invalid cursor: pass the next_cursor of the previous page unchanged, with the same "
            "sort",
            field="cursor",
        ) from None

"""Creating a task in one statement: the membership check, the INSERT and its `created` entry.

Every new task (top-level, subtask, a subtask made with its parent) is written by `INSERT_TASK`,
one static statement with positional parameters, so asyncpg prepares it once per connection.
It picks the project (by slug, else by id: an all-digit reference prefers the slug, as
`access.project_with_role` does), inserts the task only if the caller may work there, and
appends the task's first audit entry exactly as `audit.record` would (the same chain head
upsert and hashed bytes, see `audit.InsertedEntry`), all in one round trip. No row back means
no permission (or no such project): the caller then finds out which, off the hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.domain import AuditAction, Role
from taskflow.core.schemas import SubtaskSpec

ENTITY = "task"
WORKING_ROLES = [Role.MEMBER.value, Role.ADMIN.value, Role.OWNER.value]
_BIGINT_MAX = 2**63 - 1

# chr(31) is audit.SEP: the hashed bytes are before || id SEP project_id SEP id || after.
INSERT_TASK = """
WITH allowed AS (
    SELECT p.id, p.slug, m.role
    FROM projects p
    LEFT JOIN project_members m ON m.project_id = p.id AND m.worker_id = $1::bigint
    WHERE p.slug = $2::text OR p.id = $3::bigint
    ORDER BY p.slug IS NOT DISTINCT FROM $2::text DESC
    LIMIT 1
),
inserted AS (
    INSERT INTO tasks (project_id, parent_id, title, description, priority, tags, due_date,
                       recurrence, assignee_id, created_by_id)
    SELECT a.id, $4::bigint, $5::text, $6::text, $7::text, $8::text[], $9::timestamptz,
           $10::text, $11::bigint, $1::bigint
    FROM allowed a
    WHERE a.role = ANY($12::text[])
    RETURNING *
),
hashed AS (
    SELECT i.id, i.project_id,
           $13::bytea
           || convert_to(i.id::text || chr(31) || i.project_id::text || chr(31) || i.id::text,
                         'UTF8')
           || $14::bytea AS payload
    FROM inserted i
),
head AS (
    INSERT INTO audit_heads AS h (entity_type, entity_id, seq, head_hash, prev_hash)
    SELECT $15::text, x.id, 1, sha256($16::bytea || x.payload), $16::bytea
    FROM hashed x
    ON CONFLICT (entity_type, entity_id) DO UPDATE
       SET seq = h.seq + 1,
           prev_hash = h.head_hash,
           head_hash = sha256(h.head_hash || (SELECT payload FROM hashed))
    RETURNING seq, prev_hash, head_hash
),
entry AS (
    INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, actor_id,
                           actor_handle, actor_type, details, request_id, via, created_at,
                           prev_hash, hash)
    SELECT $15::text, x.id, head.seq, x.project_id, x.id, $17::text, $1::bigint, $18::text,
           $19::text, $20::text::jsonb, $21::text, $22::text, $23::timestamptz,
           head.prev_hash, head.head_hash
    FROM hashed x, head
)
SELECT i.*, a.slug AS project_slug FROM inserted i, allowed a
"""


def project_ref(ref: str) -> tuple[str, int | None]:
    """A project reference as (slug, id): digits may name either, so both are tried."""
    if ref.isascii() and ref.isdigit() and int(ref) <= _BIGINT_MAX:
        return ref, int(ref)
    return ref, None


def arguments(
    actor: Actor,
    spec: SubtaskSpec,
    *,
    slug: str | None,
    project_id: int | None,
    parent_id: int | None,
    recurrence: str | None,
    assignee_id: int | None,
    created_at: datetime | None = None,
) -> tuple[Any, ...]:
    """`INSERT_TASK`'s parameters, the `created` entry's details as `_insert_task` writes them."""
    new = spec.model_dump(mode="json")
    if recurrence:
        new["recurrence"] = recurrence
    entry = audit.inserted_entry(
        actor,
        entity_type=ENTITY,
        action=AuditAction.CREATED,
        details={"new": new, "parent_id": parent_id},
        created_at=created_at,
    )
    return (
        actor.worker_id,
        slug,
        project_id,
        parent_id,
        spec.title,
        spec.description,
        spec.priority.value,
        spec.tags,
        spec.due_date,
        recurrence,
        assignee_id,
        WORKING_ROLES,
        entry.before,
        entry.after,
        ENTITY,
        audit.GENESIS,
        str(AuditAction.CREATED),
        entry.actor_handle,
        entry.actor_type,
        entry.details,
        entry.request_id,
        entry.via,
        entry.created_at,
    )

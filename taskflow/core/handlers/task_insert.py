"""Creating a task in one statement: the membership check, the INSERT and its `created` entry.

Every new task (top-level, subtask, a subtask made with its parent) is written by one of two
static statements with positional parameters, which asyncpg prepares once per connection:

- `INSERT_TASK`, for a caller already identified (`$1` is the worker id);
- `INSERT_TASK_BY_KEY`, for a caller known only by an agent API key (`$1` is the key's
  SHA-256): the same statement checks the key (not revoked, not expired, its agent not
  deactivated) and records its use once a minute, so authenticating costs no round trip of its
  own and a revoked key is refused on its very next request. A key with narrowed scopes
  (read-only, limited to projects, see `taskflow.core.scopes`) does not open here: the caller
  then authenticates and takes the usual path, where the scopes are enforced.

Each picks the project (by slug, else by id: an all-digit reference prefers the slug, as
`access.project_with_role` does), inserts the task only if the caller may work there, and
appends the task's first audit entry exactly as `audit.record` would (the same chain head
upsert and hashed bytes, see `audit.InsertedEntry`), all in one round trip. No row back means
no permission, no such project, or (by key) a key that does not open: the caller then finds out
which, off the hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskflow.core import audit
from taskflow.core.domain import AuditAction, Role
from taskflow.core.schemas import SubtaskSpec

ENTITY = "task"
WORKING_ROLES = [Role.MEMBER.value, Role.ADMIN.value, Role.OWNER.value]
_BIGINT_MAX = 2**63 - 1

_WHO_BY_ID = """
who AS (
    SELECT w.id, w.handle, w.type FROM workers w WHERE w.id = $1::bigint
),"""

# The key check of `Authenticator._from_api_key`, and its once-a-minute `last_used_at`.
_WHO_BY_KEY = """
who AS (
    SELECT w.id, w.handle, w.type, k.id AS key_id
    FROM api_keys k JOIN workers w ON w.id = k.worker_id
    WHERE k.key_hash = $1::text
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND w.deactivated_at IS NULL
      AND NOT k.read_only AND k.project_ids IS NULL
),
touched AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT key_id FROM who)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
),"""

# chr(31) is audit.SEP. The hashed bytes: before || id SEP project_id SEP id || middle ||
# actor_id SEP actor_handle SEP actor_type || after.
_INSERT = """
WITH {who}
picked AS (
    SELECT p.id, p.slug, m.role, who.id AS actor_id, who.handle AS actor_handle,
           who.type AS actor_type
    FROM projects p
    CROSS JOIN who
    LEFT JOIN project_members m ON m.project_id = p.id AND m.worker_id = who.id
    WHERE p.slug = $2::text OR p.id = $3::bigint
    ORDER BY p.slug IS NOT DISTINCT FROM $2::text DESC
    LIMIT 1
),
allowed AS (
    SELECT * FROM picked
    WHERE role = ANY($12::text[]) AND ($25::bigint[] IS NULL OR id = ANY($25::bigint[]))
),
inserted AS (
    INSERT INTO tasks (project_id, parent_id, title, description, priority, tags, due_date,
                       recurrence, assignee_id, created_by_id, required_capabilities)
    SELECT a.id, $4::bigint, $5::text, $6::text, $7::text, $8::text[], $9::timestamptz,
           $10::text, $11::bigint, a.actor_id, $26::text[]
    FROM allowed a
    RETURNING *
),
hashed AS (
    SELECT i.id, i.project_id, a.actor_id, a.actor_handle, a.actor_type,
           $13::bytea
           || convert_to(i.id::text || chr(31) || i.project_id::text || chr(31) || i.id::text,
                         'UTF8')
           || $14::bytea
           || convert_to(a.actor_id::text || chr(31) || a.actor_handle || chr(31)
                         || a.actor_type, 'UTF8')
           || $15::bytea AS payload
    FROM inserted i, allowed a
),
head AS (
    INSERT INTO audit_heads AS h (entity_type, entity_id, seq, head_hash, prev_hash)
    SELECT $16::text, x.id, 1, sha256($17::bytea || x.payload), $17::bytea
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
                           actor_key, client_request_id, prev_hash, hash)
    SELECT $16::text, x.id, head.seq, x.project_id, x.id, $18::text, x.actor_id,
           x.actor_handle, x.actor_type, $19::text::jsonb, $20::text, $21::text,
           $22::timestamptz, $23::text, $24::text, head.prev_hash, head.head_hash
    FROM hashed x, head
)
SELECT i.*, a.slug AS project_slug, a.actor_handle AS created_by
FROM inserted i, allowed a
"""

INSERT_TASK = _INSERT.format(who=_WHO_BY_ID)
INSERT_TASK_BY_KEY = _INSERT.format(who=_WHO_BY_KEY)


def project_ref(ref: str) -> tuple[str, int | None]:
    """A project reference as (slug, id): digits may name either, so both are tried."""
    if ref.isascii() and ref.isdigit() and int(ref) <= _BIGINT_MAX:
        return ref, int(ref)
    return ref, None


def arguments(
    caller: int | str,
    spec: SubtaskSpec,
    *,
    via: str,
    request_id: str | None,
    slug: str | None,
    project_id: int | None,
    parent_id: int | None,
    recurrence: str | None,
    assignee_id: int | None,
    created_at: datetime | None = None,
    actor_key: str | None = None,
    client_request_id: str | None = None,
    project_ids: list[int] | None = None,
    required_capabilities: list[str] | None = None,
) -> tuple[Any, ...]:
    """The parameters of `INSERT_TASK` (`caller`: the worker id) or `INSERT_TASK_BY_KEY`
    (`caller`: the key's hash), the `created` entry's details as every task insert writes them.
    `project_ids`: the projects the caller's key is limited to (None: no limit)."""
    new = spec.model_dump(mode="json")
    if required_capabilities:  # left out when none: the entry as before capabilities existed
        new["required_capabilities"] = required_capabilities
    if recurrence:
        new["recurrence"] = recurrence
    entry = audit.inserted_entry(
        entity_type=ENTITY,
        action=AuditAction.CREATED,
        via=via,
        request_id=request_id,
        details={"new": new, "parent_id": parent_id},
        created_at=created_at,
        actor_key=actor_key,
        client_request_id=client_request_id,
    )
    return (
        caller,
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
        entry.middle,
        entry.after,
        ENTITY,
        audit.GENESIS,
        str(AuditAction.CREATED),
        entry.details,
        entry.request_id,
        entry.via,
        entry.created_at,
        entry.actor_key,
        entry.client_request_id,
        project_ids,
        required_capabilities or [],
    )

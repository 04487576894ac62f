"""The database schema as SQLAlchemy 2 typed ORM classes.

Enumerations are stored as text with CHECK constraints rather than PostgreSQL enum types: adding a
value later is then a one-line migration instead of an `ALTER TYPE` dance. Ids are integers
because people type them (`taskflow show 42`) as they did in Phase 1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from taskflow.core.domain import (
    AgentType,
    ApprovalPolicy,
    DeliveryStatus,
    Priority,
    ReminderKind,
    Role,
    TaskStatus,
    Via,
    WorkerType,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, enum: type) -> str:
    values = ", ".join(f"'{v.value}'" for v in enum)
    return f"{column} IN ({values})"


PRIORITY_RANK_SQL = (
    "CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`xid8`): which transaction wrote a row."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Worker(Base):
    """A human or an agent: both do tasks, both are audited the same way."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint(_in("type", WorkerType), name="type"),
        CheckConstraint(f"agent_type IS NULL OR {_in('agent_type', AgentType)}", name="agent_type"),
        CheckConstraint("handle ~ '^@[a-z0-9_-]+$'", name="handle"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    handle: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(10))
    agent_type: Mapped[str | None] = mapped_column(String(20))
    capabilities: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'"), default=list
    )
    sso_subject: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # Who registered it (an agent's chain of registrants manages it, `access.manages`).
    created_by_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workers.id"), index=True
    )
    created_at: Mapped[datetime] = _now()
    # Set when the worker is deactivated: history stays, sign-in, claims and assignment stop.
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("slug ~ '^[a-z0-9-]+$'", name="slug"),
        CheckConstraint(_in("approval_policy", ApprovalPolicy), name="approval_policy"),
        CheckConstraint("lease_seconds > 0", name="lease_seconds"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="", default="")
    owner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workers.id"))
    approval_policy: Mapped[str] = mapped_column(
        String(30), server_default=ApprovalPolicy.NONE.value, default=ApprovalPolicy.NONE.value
    )
    # Parents finish last unless this is set; a recurring task's next occurrence copies its
    # subtasks while `recur_subtasks` is (issue 13).
    allow_open_subtasks: Mapped[bool] = mapped_column(
        Boolean, server_default="false", default=False
    )
    recur_subtasks: Mapped[bool] = mapped_column(Boolean, server_default="true", default=True)
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # How long a claim holds a task here unless the claim says otherwise (15 minutes).
    lease_seconds: Mapped[int] = mapped_column(Integer, server_default="900", default=900)


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(10))
    added_at: Mapped[datetime] = _now()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_in("status", TaskStatus), name="status"),
        CheckConstraint(_in("priority", Priority), name="priority"),
        CheckConstraint("progress_percent BETWEEN 0 AND 100", name="progress"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 500", name="title"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        Index("ix_tasks_project_status", "project_id", "status", "id"),
        Index("ix_tasks_project_assignee", "project_id", "assignee_id", "id"),
        Index("ix_tasks_project_priority_rank", "project_id", "priority_rank", "id"),
        Index("ix_tasks_project_due", "project_id", "due_date", "id"),
        Index("ix_tasks_project_created", "project_id", "created_at", "id"),
        Index("ix_tasks_project_updated", "project_id", "updated_at", "id"),
        Index("ix_tasks_created_by", "created_by_id", "id"),
        Index("ix_tasks_parent_id_id", "parent_id", "id"),
        Index("ix_tasks_tags", "tags", postgresql_using="gin"),
        # The housekeeper's reminder scan: open tasks with a due date, by due date (0008).
        Index(
            "ix_tasks_open_due",
            "due_date",
            postgresql_where=text("due_date IS NOT NULL AND status <> 'completed'"),
        ),
        Index(
            "ix_tasks_series",
            "series_id",
            "due_date",
            postgresql_where=text("series_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_reviewer",
            "reviewer_id",
            "id",
            postgresql_where=text("reviewer_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_claimable",
            "priority_rank",
            "due_date",
            "id",
            postgresql_where=text("status = 'pending' AND assignee_id IS NULL"),
        ),
        # Only leased tasks: "has any lease run out?" is one short scan of this index.
        Index(
            "ix_tasks_lease_expires_at",
            "lease_expires_at",
            postgresql_where=text("lease_expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    # Indexed with id (`ix_tasks_parent_id_id`): a task's children in id order, one range scan.
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, server_default="", default="")
    status: Mapped[str] = mapped_column(
        String(20), server_default=TaskStatus.PENDING.value, default=TaskStatus.PENDING.value
    )
    priority: Mapped[str] = mapped_column(
        String(10), server_default=Priority.MEDIUM.value, default=Priority.MEDIUM.value
    )
    # Sorting by priority sorts by this rank, which an index serves (the text would sort wrongly).
    priority_rank: Mapped[int] = mapped_column(
        SmallInteger, Computed(PRIORITY_RANK_SQL, persisted=True)
    )
    progress_percent: Mapped[int] = mapped_column(SmallInteger, server_default="0", default=0)
    assignee_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="SET NULL")
    )
    created_by_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workers.id"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"), default=list)
    due_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recurrence: Mapped[str | None] = mapped_column(String(100))
    # The member `request_review` named, while the task is in review (cleared when it leaves).
    reviewer_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="SET NULL")
    )
    # On the later occurrences of a recurring task: the id of the series' first task.
    series_id: Mapped[int | None] = mapped_column(BigInteger)
    # When work first started (kept through review) and when it was completed (cleared on reopen).
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # A claim's lease: until when the claimer holds the task, and the length a renewal adds.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_seconds: Mapped[int | None] = mapped_column(Integer)
    # Claims offer the task only to workers whose capabilities include all of these.
    required_capabilities: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'"), default=list
    )


class TaskDependency(Base):
    """`task_id` is blocked by `blocker_id` until the blocker is completed."""

    __tablename__ = "task_dependencies"
    __table_args__ = (
        CheckConstraint("task_id <> blocker_id", name="not_self"),
        Index("ix_task_dependencies_blocker", "blocker_id", "task_id"),
    )

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    blocker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """An agent's credential. Only the SHA-256 of the key is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), server_default="default", default="default")
    created_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("workers.id"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Scopes (`taskflow.core.scopes`): reads only; only these projects (NULL: all the agent's);
    # may register agents and issue keys.
    read_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    project_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
    manage_agents: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )


class AuditEntry(Base):
    """One line of the append-only, hash-chained audit log.

    Chains are per entity (`entity_type`, `entity_id`), ordered by `seq`; each `hash` covers the
    entry's fields and the previous entry's hash. The database refuses UPDATE/DELETE/TRUNCATE.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("via", Via), name="via"),
        CheckConstraint(_in("actor_type", WorkerType), name="actor_type"),
        UniqueConstraint("entity_type", "entity_id", "seq", name="uq_audit_log_entity_seq"),
        Index("ix_audit_log_project", "project_id", "id"),
        Index("ix_audit_log_actor", "actor_handle", "id"),
        Index("ix_audit_log_task", "task_id", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_xact_id", "xact", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(30))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_handle: Mapped[str] = mapped_column(String(100))
    actor_type: Mapped[str] = mapped_column(String(10))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    request_id: Mapped[str | None] = mapped_column(String(100))
    via: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The display prefix of the API key the change was made with; the X-Request-ID the client
    # sent (as sent, beside the server's `request_id`). Hashed when set (`audit.payload`).
    actor_key: Mapped[str | None] = mapped_column(String(32))
    client_request_id: Mapped[str | None] = mapped_column(String(100))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    # The writing transaction (a default, never bound): the feed's order (`core/feed.py`).
    xact: Mapped[int] = mapped_column(
        Xid8(), server_default=text("pg_current_xact_id()"), deferred=True
    )


class AuditHead(Base):
    """The newest hash of each entity's chain; its row lock orders appends to that chain only."""

    __tablename__ = "audit_heads"

    entity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)


class IdempotencyRecord(Base):
    """The first answer to a request sent with an idempotency key, replayed on retries."""

    __tablename__ = "idempotency_keys"

    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class ImportRecord(Base):
    """Which Phase 1 record became which row, so a second import changes nothing."""

    __tablename__ = "import_records"

    source_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    imported_at: Mapped[datetime] = _now()


class Webhook(Base):
    """A project's webhook: where its events are POSTed, signed with `secret` (Standard
    Webhooks), for the actions in `events` (`*`: all). `failures` counts failed attempts since
    the last success; the housekeeper disables a hook whose delivery used up its retries."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str] = mapped_column(Text, server_default="", default="")
    # Kept as given (`whsec_<base64>`): signing needs it. Shown once, never read back out.
    secret: Mapped[str] = mapped_column(String(100))
    # The secret a rotation replaced, which signs beside `secret` until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    created_by_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workers.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """The outbox: one row per (hook, audit entry), written by a trigger on `audit_log` in the
    transaction that wrote the entry; the housekeeper delivers it and keeps its outcome."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhooks.id", ondelete="CASCADE")
    )
    audit_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(
        String(10), server_default=DeliveryStatus.PENDING.value, default="pending"
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    next_attempt_at: Mapped[datetime] = _now()
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """The delivery log: one row per POST of a delivery, with what the receiver answered."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = _now()
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class TaskReminder(Base):
    """A reminder sent (`due_soon`, `overdue`) for a task and the due date it had then: the
    housekeeper sends each once; a new due date gets its own."""

    __tablename__ = "task_reminders"
    __table_args__ = (CheckConstraint(_in("kind", ReminderKind), name="kind"),)

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    due_date: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    audit_id: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = _now()


class RateBucket(Base):
    """A worker's shared token bucket for writes or reads (UNLOGGED; `taskflow.core.limits`)."""

    __tablename__ = "rate_buckets"
    __table_args__ = (
        CheckConstraint("kind IN ('write', 'read')", name="kind"),
        {"prefixes": ["UNLOGGED"]},
    )

    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    tokens: Mapped[float] = mapped_column(DOUBLE_PRECISION)
    capacity: Mapped[float] = mapped_column(DOUBLE_PRECISION)
    rate: Mapped[float] = mapped_column(DOUBLE_PRECISION)
    spent: Mapped[float] = mapped_column(DOUBLE_PRECISION)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Comment(Base):
    """One revision of a comment on a task: append-only (a trigger refuses UPDATE).

    `comment_id` names the comment (its first revision's id); an edit adds the next `revision`
    and keeps the old text. `mentions` holds the ids of the members its `@handle`s named.
    """

    __tablename__ = "comments"
    __table_args__ = (
        CheckConstraint("char_length(body) BETWEEN 1 AND 20000", name="body"),
        CheckConstraint("revision >= 1", name="revision"),
        UniqueConstraint("comment_id", "revision", name="uq_comments_comment_revision"),
        Index("ix_comments_task_id", "task_id", "comment_id", "revision"),
        Index("ix_comments_mentions", "mentions", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    comment_id: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[int] = mapped_column(Integer, server_default="1")
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    author_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workers.id"))
    body: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), server_default=text("'{}'"), default=list
    )
    created_at: Mapped[datetime] = _now()

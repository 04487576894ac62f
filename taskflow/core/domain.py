"""The vocabulary and rules of TaskFlow, with no I/O.

Phase 1's transition table is the rule for task status; the services consult it before every
status change so that all three surfaces refuse the same moves with the same words.
"""

from __future__ import annotations

import re
from enum import StrEnum

from taskflow.core.errors import ValidationFailed

HANDLE_RE = re.compile(r"^@[a-z0-9_-]+$")


def is_number(text: str) -> bool:
    """ASCII digits only: `str.isdigit()` also accepts superscripts such as "²", which `int()`
    then refuses, so input checked with it reached the database as a 500."""
    return text.isascii() and text.isdigit()


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    REVIEW = "review"
    COMPLETED = "completed"
    BLOCKED = "blocked"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class WorkerType(StrEnum):
    HUMAN = "human"
    AGENT = "agent"


class AgentType(StrEnum):
    CLAUDE = "claude"
    QWEN = "qwen"
    GEMINI = "gemini"
    CUSTOM = "custom"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class ApprovalPolicy(StrEnum):
    """Whether completing a task needs an approved review first."""

    NONE = "none"
    REVIEW_REQUIRED = "review_required"


class Via(StrEnum):
    """The surface a change came through, recorded on every audit entry."""

    MCP = "mcp"
    CLI = "cli"
    HTTP = "http"
    IMPORT = "import"
    CORE = "core"


class AuditAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    STARTED = "started"
    PROGRESSED = "progressed"
    REVIEW_REQUESTED = "review_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"
    ASSIGNED = "assigned"
    DELEGATED = "delegated"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    CLAIMED = "claimed"
    SUBTASK_ADDED = "subtask_added"
    SUBTASK_CREATED = "subtask_created"
    DUE_DATE_SET = "due_date_set"
    DUE_DATE_CLEARED = "due_date_cleared"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    ROLE_CHANGED = "role_changed"
    AGENT_REGISTERED = "agent_registered"
    AGENT_DEACTIVATED = "agent_deactivated"
    AGENT_REACTIVATED = "agent_reactivated"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    IMPORTED = "imported"
    RECURRED = "recurred"
    WEBHOOK_CREATED = "webhook_created"
    WEBHOOK_UPDATED = "webhook_updated"
    WEBHOOK_DELETED = "webhook_deleted"
    WEBHOOK_DISABLED = "webhook_disabled"
    WEBHOOK_REDELIVERED = "webhook_redelivered"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    DEPENDENCY_ADDED = "dependency_added"
    DEPENDENCY_REMOVED = "dependency_removed"
    LEASE_RENEWED = "lease_renewed"
    LEASE_EXPIRED = "lease_expired"
    COMMENTED = "commented"
    COMMENT_EDITED = "comment_edited"


SYSTEM_HANDLE = "@system"
"""The worker the server's housekeeping acts as (reminders, disabling a failing webhook).

Created on first need (`taskflow.core.system`), with its own `created` entry; no key opens it,
and nobody else may take the handle."""
RESERVED_HANDLES = frozenset({SYSTEM_HANDLE})


class DeliveryStatus(StrEnum):
    """Where a webhook delivery stands: waiting (or retrying), done, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ReminderKind(StrEnum):
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED}),
    TaskStatus.IN_PROGRESS: frozenset(
        {TaskStatus.REVIEW, TaskStatus.COMPLETED, TaskStatus.BLOCKED}
    ),
    TaskStatus.REVIEW: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.REVIEW}),
    TaskStatus.BLOCKED: frozenset({TaskStatus.PENDING, TaskStatus.IN_PROGRESS}),
}


def check_handle(handle: str) -> str:
    """Handles look like `@claude-code`: the form Phase 1 used and its users type."""
    if not HANDLE_RE.match(handle):
        raise ValidationFailed(
            f"invalid handle {handle!r}: use '@' followed by lowercase letters, digits, '_' or '-' "
            "(for example @claude-code)",
            field="handle",
        )
    return handle


def role_at_least(role: Role, needed: Role) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[needed]

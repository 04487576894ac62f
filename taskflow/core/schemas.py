"""Pydantic models for every operation's input and output.

The MCP tools and the REST endpoints both speak these models, so an agent and the frontend see
the same field names, limits and error messages, and the two surfaces cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from taskflow.core import recurrence as recurrence_rules
from taskflow.core.domain import (
    AgentType,
    ApprovalPolicy,
    Priority,
    Role,
    TaskStatus,
    WorkerType,
)

Handle = Annotated[
    str,
    StringConstraints(pattern=r"^@[a-z0-9_-]+$", max_length=100),
    Field(description="A worker handle such as @claude-code", examples=["@claude-code"]),
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$", min_length=1, max_length=100)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Percent = Annotated[int, Field(ge=0, le=100)]
Version = Annotated[
    int | None,
    Field(default=None, ge=1, description="The version your change is based on; stale = refused"),
]


def _at_most_a_day(value: int | None) -> int | None:
    if value is not None and value > 86_400:
        raise ValueError("a lease is at most 86400 seconds (a day): renew it instead")
    return value


LeaseSeconds = Annotated[int | None, Field(default=None, ge=1), AfterValidator(_at_most_a_day)]
ProjectRef = Annotated[
    str, Field(min_length=1, max_length=100, description="Project slug (or numeric id)")
]


def _to_datetime(value: Any) -> Any:
    """A bare date means midnight UTC: Phase 1 users type `--due 2026-12-01`."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str) and len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
    return value


def _aware(value: datetime | None) -> datetime | None:
    """Naive datetimes are read as UTC so comparisons never mix the two kinds."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


to_datetime, aware = _to_datetime, _aware  # for commands whose date is required

DueDate = Annotated[
    datetime | None,
    BeforeValidator(_to_datetime),
    AfterValidator(_aware),
    Field(default=None, description="2026-12-01 or an ISO date-time; UTC if no offset"),
]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
# The accepted forms are in the refusal of any other value (`recurrence.ACCEPTED`).
Recurrence = Annotated[
    str | None, Field(default=None, max_length=100), AfterValidator(recurrence_rules.canonical)
]
Tags = Annotated[
    list[Tag],
    Field(default_factory=list, max_length=50),
]


def _capabilities(values: list[str]) -> list[str]:
    """Each capability is a tag's length (checked here, kept off the schema agents read)."""
    cleaned = [v.strip() for v in values]
    if any(not 1 <= len(v) <= 50 for v in cleaned):
        raise ValueError("each capability is 1 to 50 characters")
    return cleaned


Capabilities = Annotated[list[str], Field(max_length=20), AfterValidator(_capabilities)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, defer_build=True)


# ---------------------------------------------------------------- outputs


class WorkerOut(Model):
    id: int
    handle: str
    name: str
    type: WorkerType
    agent_type: AgentType | None = None
    capabilities: list[str] = Field(default_factory=list)
    created_at: datetime
    active: bool = Field(
        default=True, description="False once deactivated: no sign-in, claims or new tasks"
    )
    deactivated_at: datetime | None = None


class MeOut(WorkerOut):
    """The caller's own record: the only answer that carries personal data, and only its own."""

    email: str | None = Field(default=None, description="From sign-in; null for agents")
    sso_subject: str | None = Field(
        default=None, description="The auth server's user id (JWT `sub`); null for agents"
    )


class ProjectOut(Model):
    id: int
    slug: str
    name: str
    description: str
    owner: str = Field(description="Owner's handle")
    approval_policy: ApprovalPolicy
    lease_seconds: int = Field(default=900, description="A claim's default lease here")
    version: int
    created_at: datetime
    updated_at: datetime
    my_role: Role | None = Field(default=None, description="The caller's role in this project")
    allow_open_subtasks: bool = Field(
        default=False, description="Whether a task may be completed while subtasks are open"
    )
    recur_subtasks: bool = Field(
        default=True, description="Whether a recurring task's next occurrence copies its subtasks"
    )


class MemberOut(Model):
    handle: str
    name: str
    type: WorkerType
    role: Role
    added_at: datetime


class Blocker(Model):
    """A task this one waits for; `done` once it is completed."""

    id: int
    done: bool


class TaskOut(Model):
    """A task. Handles (`project`, `assignee`, `created_by`) are for people; the `*_id` fields
    carry the same facts as row ids, under the names the seed's API used."""

    id: int
    project: str = Field(description="Project slug")
    project_id: int
    parent_id: int | None = None
    parent_task_id: int | None = Field(default=None, description="Same as parent_id")
    title: str
    description: str = ""
    status: TaskStatus
    priority: Priority
    progress_percent: int
    assignee: str | None = None
    assignee_id: int | None = None
    created_by: str
    created_by_id: int
    tags: list[str] = Field(default_factory=list)
    due_date: datetime | None = None
    recurrence: str | None = None
    recurrence_legacy: bool = Field(
        default=False, description="Phase 1 free text: kept as it was, never recurs"
    )
    reviewer: str | None = Field(
        default=None, description="The reviewer named by request_review, while in review"
    )
    started_at: datetime | None = Field(
        default=None, description="When work first started; kept through review and rejection"
    )
    completed_at: datetime | None = Field(
        default=None, description="When it was completed; null again once reopened"
    )
    blocked_by: list[Blocker] = Field(
        default_factory=list, description="Tasks it waits for; it starts once all are done"
    )
    required_capabilities: list[str] = Field(
        default_factory=list, description="Claims offer it only to workers having all of these"
    )
    lease_expires_at: datetime | None = Field(
        default=None, description="Until when its claimer holds it; renewed by progress"
    )
    version: int
    created_at: datetime
    updated_at: datetime


class TaskNode(TaskOut):
    depth: int = Field(description="0 for the requested task, 1 for its children, ...")
    rolled_up_progress: int = Field(description="Progress including all descendants, 0..100")


class TaskDetail(Model):
    """A task with a page of its subtree, flattened depth-first (rebuild the tree from
    parent_id); `next_cursor` reads the next page."""

    task: TaskNode
    subtree: list[TaskNode] = Field(default_factory=list, description="Descendants, depth-first")
    subtasks: list[int] = Field(default_factory=list, description="Ids of the direct children")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page of subtree; null if none"
    )


class AuditEntryOut(Model):
    id: int
    entity_type: str
    entity_id: int
    seq: int
    project_id: int | None = None
    task_id: int | None = None
    action: str
    actor: str
    actor_type: WorkerType
    details: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    via: str
    created_at: datetime
    actor_key: str | None = Field(default=None, description="Prefix of the API key used")
    client_request_id: str | None = Field(default=None, description="The client's X-Request-ID")


T = TypeVar("T")


class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page"
    )


class ApiKeyOut(Model):
    id: int
    worker: str
    name: str
    display_prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    read_only: bool = False
    projects: list[str] | None = Field(default=None, description="Only these (null: all)")
    manage_agents: bool = False


class IssuedKey(Model):
    """An agent and its new API key. The key is shown only in this answer: store it now."""

    worker: WorkerOut
    api_key: str
    key: ApiKeyOut


class AgentDeactivated(Model):
    """A deactivated agent and the keys that deactivation revoked (none if it already was)."""

    worker: WorkerOut
    changed: bool = Field(description="False when it already was deactivated: nothing changed")
    revoked_keys: list[ApiKeyOut] = Field(default_factory=list)


class VerifyOut(Model):
    ok: bool
    entries_checked: int
    chains_checked: int
    problems: list[dict[str, Any]] = Field(default_factory=list)
    digest: str | None = None


# ---------------------------------------------------------------- inputs


class CreateProject(Model):
    slug: Slug
    name: Name
    description: str = Field(default="", max_length=5000)
    approval_policy: ApprovalPolicy = ApprovalPolicy.NONE
    allow_open_subtasks: bool = False
    recur_subtasks: bool = True


class UpdateProject(Model):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=5000)
    approval_policy: ApprovalPolicy | None = None
    allow_open_subtasks: bool | None = Field(
        default=None, description="Allow completing a task whose subtasks are open (owners)"
    )
    recur_subtasks: bool | None = Field(
        default=None, description="Copy subtasks into a recurring task's next occurrence"
    )
    lease_seconds: LeaseSeconds = None
    expected_version: Version = None


class AddMember(Model):
    handle: Handle
    role: Role = Role.MEMBER


class CreateHuman(Model):
    handle: Handle
    name: Name
    email: str | None = None
    sso_subject: str | None = None


class KeyScopes(Model):
    """What a new key may do (`taskflow.core.scopes`); a key issued with a narrowed key is
    never wider than that key."""

    read_only: bool = Field(default=False, description="Only reads: every change refused")
    projects: list[Slug] | None = Field(
        default=None, max_length=100, description="Only these projects (null: all)"
    )
    manage_agents: bool = Field(default=False, description="May register agents and issue keys")


class RegisterAgent(KeyScopes):
    handle: Handle
    name: Name
    agent_type: AgentType = AgentType.CUSTOM
    capabilities: Tags
    expires_at: DueDate = None


class WorkerFilter(Model):
    type: WorkerType | None = Field(default=None, description="Only humans or only agents")


class SubtaskSpec(Model):
    title: Title
    description: str = Field(default="", max_length=20000)
    priority: Priority = Priority.MEDIUM
    tags: Tags
    due_date: DueDate = None
    assignee: Handle | None = None


class CreateTask(SubtaskSpec):
    project: ProjectRef | None = Field(
        default=None, description="Project slug; omit to use the parent's project or 'default'"
    )
    parent_id: int | None = None
    recurrence: Recurrence = None
    required_capabilities: Capabilities = Field(default_factory=list)
    subtasks: list[SubtaskSpec] = Field(
        default_factory=list, max_length=200, description="Created with it, all or nothing"
    )


class EditTask(Model):
    """Only the fields you send change; `null` clears assignee, due date or parent."""

    title: Title | None = None
    description: str | None = Field(default=None, max_length=20000)
    priority: Priority | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    due_date: DueDate = None
    parent_id: int | None = None
    status: TaskStatus | None = None
    assignee: Handle | None = None
    recurrence: Recurrence = None
    required_capabilities: Capabilities | None = None
    expected_version: Version = None


SortKey = Literal["created", "updated", "priority", "due_date", "title"]


class TaskFilter(Model):
    project: ProjectRef | None = Field(default=None, description="Omit for all your projects")
    status: TaskStatus | None = None
    assignee: Handle | None = None
    no_assignee: bool = False
    parent_id: int | None = None
    top_level: bool = Field(default=False, description="Only tasks without a parent")
    search: str | None = Field(default=None, max_length=200)
    priority: Priority | None = None
    tags: list[Annotated[str, StringConstraints(max_length=50)]] = Field(
        default_factory=list, max_length=50, description="Tasks having all these tags"
    )
    created_by: Handle | None = None
    due_before: DueDate = None
    due_after: DueDate = None
    has_due_date: bool | None = Field(
        default=None, description="true: only tasks with a due date; false: only those without"
    )
    open_only: bool = Field(default=False, description="Leave out completed tasks")
    ready: bool = Field(default=False, description="Open, no open blocker")
    blocked: bool = Field(default=False, description="With an open blocker")
    required_capabilities: list[str] = Field(default_factory=list)  # tasks needing all of these
    sort: SortKey = "created"
    reverse: bool = False
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=500)


class AuditFilter(Model):
    task_id: int | None = None
    project: ProjectRef | None = None
    actor: Handle | None = None
    action: str | None = Field(default=None, max_length=30)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=500)


# ---------------------------------------------------------------- compact answers
# What MCP tools answer where the full record would make `tools/list` too big for an agent's
# context (see `declare(..., mcp_output=...)`): projections of the records above.


class TaskState(Model):
    """Where a task stands after a change: what the next call needs (get_task has the rest)."""

    id: int
    title: str
    status: TaskStatus
    progress_percent: int
    assignee: str | None = None
    version: int


class TaskSummary(TaskState):
    """A task in a listing: no description or timestamps, so a page stays small."""

    project: str
    parent_id: int | None = None
    priority: Priority
    tags: list[str] = Field(default_factory=list)
    due_date: datetime | None = None


class ClaimedTask(TaskState):
    """A claimed task: what the claimer needs to start (get_task has the rest)."""

    project: str
    description: str = ""
    priority: Priority
    assignee_id: int | None = None
    started_at: datetime | None = None
    lease_expires_at: datetime | None = None


class CreatedTasks(Model):
    """A new task and the subtasks made with it, in creation order."""

    task: TaskState
    subtasks: list[TaskState] = Field(default_factory=list)

    @classmethod
    def of(cls, detail: TaskDetail) -> CreatedTasks:
        states = [TaskState.model_validate(n, from_attributes=True) for n in detail.subtree]
        return cls(
            task=TaskState.model_validate(detail.task, from_attributes=True), subtasks=states
        )

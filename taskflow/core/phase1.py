"""Phase 1's JSON store as pydantic models, read and checked before anything is imported.

A Phase 1 store is `.taskflow/data.json` (projects, workers, tasks, audit_logs) plus
`config.json`. The whole file is validated first, and every record that refers to another
(a task's project, assignee, creator, parent) is checked, so the importer either takes all of
it or refuses with the line and field at fault and writes nothing.

Datetimes in Phase 1 are naive; they are read as UTC.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from json.decoder import scanstring
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from taskflow.core.domain import AgentType, Priority, TaskStatus, WorkerType
from taskflow.core.errors import ValidationFailed

DATA_FILE = "data.json"
CONFIG_FILE = "config.json"
STORE_DIR = ".taskflow"


def _utc(value: datetime | None) -> datetime | None:
    """Phase 1 wrote naive times; read them as UTC so they compare with Phase 2's."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Timestamp = Annotated[datetime, AfterValidator(_utc)]
Handle = Annotated[str, StringConstraints(pattern=r"^@[a-z0-9_-]+$", max_length=100)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$", min_length=1, max_length=100)]


class Record(BaseModel):
    """Unknown fields are kept (and land in the `imported` audit entry), never dropped."""

    model_config = ConfigDict(extra="allow")


class P1Project(Record):
    slug: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str | None = None


class P1Worker(Record):
    id: Handle
    type: WorkerType
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    agent_type: AgentType | None = None
    capabilities: list[str] = Field(default_factory=list)
    created_at: Timestamp


class P1Task(Record):
    id: int = Field(ge=1)
    title: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    description: str | None = None
    status: TaskStatus
    priority: Priority
    progress_percent: int = Field(ge=0, le=100)
    project_slug: Slug
    assigned_to: Handle | None = None
    parent_id: int | None = None
    tags: list[str] = Field(default_factory=list)
    due_date: Annotated[datetime | None, AfterValidator(_utc)] = None
    recurrence: str | None = Field(default=None, max_length=100)
    created_by: Handle
    created_at: Timestamp
    updated_at: Timestamp


class P1AuditLog(Record):
    id: int = Field(ge=1)
    task_id: int | None = None
    project_slug: str | None = None
    actor_id: Handle
    actor_type: WorkerType
    action: Annotated[str, StringConstraints(min_length=1, max_length=30)]
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: Timestamp


class P1Store(Record):
    projects: list[P1Project] = Field(default_factory=list)
    workers: list[P1Worker] = Field(default_factory=list)
    tasks: list[P1Task] = Field(default_factory=list)
    audit_logs: list[P1AuditLog] = Field(default_factory=list)

    @property
    def record_count(self) -> int:
        return len(self.projects) + len(self.workers) + len(self.tasks) + len(self.audit_logs)


class P1Config(Record):
    default_project: str | None = "default"
    current_user: str | None = None
    storage_mode: str | None = "json"


@dataclass(frozen=True)
class Phase1Source:
    """A validated store, where it came from, and the key that makes re-imports no-ops."""

    path: Path
    store: P1Store
    raw: dict[str, Any]
    config: P1Config | None
    store_key: str

    def original(self, section: str, index: int) -> Any:
        """A record exactly as Phase 1 wrote it (naive times and all), for the audit trail."""
        return self.raw[section][index]


# ------------------------------------------------------------------ locating errors


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _index(text: str, pos: int, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> int:
    """Record where each value starts; return the position after it. Text is valid JSON."""
    pos = _skip_ws(text, pos)
    out[path] = pos
    opener = text[pos]
    if opener not in "{[":
        _, end = json.JSONDecoder().raw_decode(text, pos)
        return end
    closer = "}" if opener == "{" else "]"
    pos = _skip_ws(text, pos + 1)
    if text[pos] == closer:
        return pos + 1
    i = 0
    while True:
        if opener == "{":
            pos = _skip_ws(text, pos)
            key, pos = scanstring(text, pos + 1)
            pos = _skip_ws(text, pos) + 1  # the colon
            pos = _index(text, pos, (*path, key), out)
        else:
            pos = _index(text, pos, (*path, i), out)
            i += 1
        pos = _skip_ws(text, pos)
        if text[pos] == closer:
            return pos + 1
        pos += 1  # the comma


def line_of(text: str, path: tuple[Any, ...]) -> int:
    """The 1-based line of the value at `path` (or of its nearest existing parent)."""
    positions: dict[tuple[Any, ...], int] = {}
    _index(text, 0, (), positions)
    while path and path not in positions:
        path = path[:-1]
    return text.count("\n", 0, positions.get(path, 0)) + 1


def dotted(path: tuple[Any, ...]) -> str:
    """`('tasks', 3, 'status')` -> `tasks[3].status`, as a reader of the file would say it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _refuse(file: Path, text: str, path: tuple[Any, ...], message: str, more: int = 0) -> None:
    line = line_of(text, path)
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    raise ValidationFailed(
        f"{file.name} line {line}, {dotted(path)}: {message}{extra}. Nothing was imported; "
        "fix the file and run the import again",
        field=dotted(path),
        line=line,
        file=str(file),
    )


# ------------------------------------------------------------------ reading


def locate(path: Path) -> Path:
    """The data.json of a store given as the file, the `.taskflow/` dir, or the dir holding it."""
    candidates = [path] if path.is_file() else [path / DATA_FILE, path / STORE_DIR / DATA_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValidationFailed(
        f"no Phase 1 store at {path}: give the `.taskflow/` directory or its data.json",
        field="path",
    )


def _parse(file: Path) -> tuple[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{file.name} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}", field="path") from None
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"{file.name} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). "
            "Nothing was imported",
            line=exc.lineno,
            file=str(file),
        ) from None


def _validate(file: Path, text: str, raw: Any, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        got = "" if first["type"] == "missing" else f" (got {first.get('input')!r})"
        _refuse(file, text, tuple(first["loc"]), first["msg"] + got, len(errors) - 1)
    raise AssertionError("unreachable")


def load(path: Path) -> Phase1Source:
    """Read, validate and cross-check a Phase 1 store; refuse it whole if anything is wrong."""
    data_file = locate(path)
    text, raw = _parse(data_file)
    store: P1Store = _validate(data_file, text, raw, P1Store)
    check_references(data_file, text, store)
    config = None
    config_file = data_file.with_name(CONFIG_FILE)
    if config_file.is_file():
        config_text, config_raw = _parse(config_file)
        config = _validate(config_file, config_text, config_raw, P1Config)
    return Phase1Source(
        path=data_file, store=store, raw=raw, config=config, store_key=store_key(store)
    )


def _unique(file: Path, text: str, section: str, keys: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for i, key in enumerate(keys):
        if key in seen:
            _refuse(file, text, (section, i), f"duplicate {what} {key!r}")
        seen.add(key)


def check_references(file: Path, text: str, store: P1Store) -> None:
    """Every reference must resolve, ids must be unique and parents must not form a cycle."""
    _unique(file, text, "projects", [p.slug for p in store.projects], "project slug")
    _unique(file, text, "workers", [w.id for w in store.workers], "worker id")
    _unique(file, text, "tasks", [t.id for t in store.tasks], "task id")
    _unique(file, text, "audit_logs", [a.id for a in store.audit_logs], "audit id")
    slugs = {p.slug for p in store.projects}
    handles = {w.id for w in store.workers}
    for i, w in enumerate(store.workers):
        if w.type is WorkerType.AGENT and w.agent_type is None:
            _refuse(file, text, ("workers", i, "agent_type"), "an agent needs an agent_type")
    for i, t in enumerate(store.tasks):
        if t.project_slug not in slugs:
            _refuse(file, text, ("tasks", i, "project_slug"), f"no project {t.project_slug!r}")
        for field in ("assigned_to", "created_by"):
            handle = getattr(t, field)
            if handle is not None and handle not in handles:
                _refuse(file, text, ("tasks", i, field), f"no worker {handle} in workers")
    _refuse_cycles(file, text, store)


def _refuse_cycles(file: Path, text: str, store: P1Store) -> None:
    parent = {t.id: t.parent_id for t in store.tasks}
    position = {t.id: i for i, t in enumerate(store.tasks)}
    for start in parent:
        seen = {start}
        node = parent[start]
        while node is not None and node in parent:
            if node in seen:
                _refuse(
                    file,
                    text,
                    ("tasks", position[start], "parent_id"),
                    f"task {start}'s parents loop back to itself",
                )
            seen.add(node)
            node = parent[node]


def store_key(store: P1Store) -> str:
    """A stable identity for a store, so importing it again (even after more Phase 1 work)
    skips what was already imported.

    Phase 1 never deletes workers, and `init` creates the first one, so the earliest worker
    (handle and creation time, to the microsecond) identifies the store for its whole life.
    """
    if store.workers:
        first = min(store.workers, key=lambda w: (w.created_at, w.id))
        seed = f"worker:{first.id}:{first.created_at.isoformat()}"
    elif store.tasks:
        first_task = min(store.tasks, key=lambda t: (t.created_at, t.id))
        seed = f"task:{first_task.id}:{first_task.created_at.isoformat()}"
    elif store.audit_logs:
        seed = f"audit:{store.audit_logs[0].timestamp.isoformat()}"
    else:
        seed = "projects:" + ",".join(sorted(p.slug for p in store.projects))
    return hashlib.sha256(seed.encode()).hexdigest()[:16]

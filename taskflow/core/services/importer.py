"""Taking over a Phase 1 store: projects, workers, tasks and their whole audit history.

Everything happens in one transaction, after `phase1.load` has validated the whole file, so an
import either lands completely or not at all. Each Phase 1 record is noted in `import_records`
under a key derived from the store's identity (`phase1:<store key>:<kind>:<id>`); a second run
skips what is noted, so re-importing the same store changes nothing.

How Phase 1 maps onto Phase 2 (docs/cli.md explains it for users):
- Workers keep their handle. A handle that already exists is the same worker (matched), unless
  its type differs, which is refused. New workers are created by the importing user.
- Projects keep their slug. A new one is owned by the importing user; an existing one (every
  install has `default`) is merged into, which needs the importer to be its admin or owner.
  Phase 1 had no permissions, so every Phase 1 worker becomes a member of every imported project.
- Tasks keep their Phase 1 id when it is free, else get the next id (the report lists them),
  with their timestamps, nesting, assignee and creator; `started_at`/`completed_at` come from
  their history. A subtask in another project than its parent moves into the parent's, and one
  whose parent was deleted becomes top-level: both are noted in its `imported` entry and listed
  in the report.
- On a fresh install (`import_as_local_user`) the store's current user is first set up as the
  local user, as `taskflow init` would, in the same transaction.
- Each Phase 1 audit entry becomes a Phase 2 entry with its original action, actor and time,
  `via=import`, and its context as details plus `phase1` provenance. Entries of tasks Phase 1
  deleted are kept on a reserved task id (Phase 1 reuses ids, so each deleted incarnation of an
  id gets its own chain).
- Each project, worker and task gets an `imported` entry (by the importing user, now) holding
  the Phase 1 record exactly as it was written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database, analyze
from taskflow.core.domain import AuditAction, Role, TaskStatus, Via, WorkerType, check_handle
from taskflow.core.errors import Conflict, NotFound, ValidationFailed
from taskflow.core.models import ImportRecord, Project, ProjectMember, Task, Worker
from taskflow.core.phase1 import P1AuditLog, P1Task, Phase1Source
from taskflow.core.schemas import CreateProject
from taskflow.core.services import onboarding
from taskflow.core.services.access import project_with_role
from taskflow.core.services.onboarding import LocalSetup
from taskflow.core.services.tasks import DEFAULT_PROJECT

Progress = Callable[[int], None]
"""Called with the number of Phase 1 records just handled (for a progress bar)."""

_LOCK_IMPORTS = text("SELECT pg_advisory_xact_lock(hashtext('taskflow:phase1-import'))")
_LOCK_TASK_IDS = text("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
_SEQUENCE = "pg_get_serial_sequence('tasks', 'id')"


class ImportReport(BaseModel):
    """What an import did; every list is empty and every count 0 when nothing was new."""

    source: str
    store_key: str
    projects_created: list[str] = Field(default_factory=list)
    projects_merged: list[str] = Field(default_factory=list)
    workers_created: list[str] = Field(default_factory=list)
    workers_matched: list[str] = Field(default_factory=list)
    memberships_added: int = 0
    tasks_imported: int = 0
    tasks_renumbered: dict[int, int] = Field(
        default_factory=dict, description="Phase 1 id -> Phase 2 id, where the id was taken"
    )
    deleted_task_histories: int = 0
    tasks_moved: list[int] = Field(
        default_factory=list,
        description="Phase 1 ids of subtasks moved into their parent's project",
    )
    tasks_detached: list[int] = Field(
        default_factory=list,
        description="Phase 1 ids of subtasks whose parent was deleted: now top-level tasks",
    )
    audit_entries_imported: int = 0
    already_imported: int = Field(default=0, description="Records skipped: imported before")
    local_user: LocalSetup | None = Field(
        default=None, description="The local user this import set up (a fresh install's first)"
    )

    @property
    def changed(self) -> bool:
        return bool(
            self.projects_created
            or self.projects_merged
            or self.workers_created
            or self.workers_matched
            or self.memberships_added
            or self.tasks_imported
            or self.audit_entries_imported
        )


@dataclass
class Incarnation:
    """One life of a Phase 1 task id: Phase 1 reuses the id of a deleted last task."""

    phase1_id: int
    key: str
    task: P1Task | None  # the live task, or None for a deleted one (history only)
    entries: list[P1AuditLog] = field(default_factory=list)


def incarnations(source: Phase1Source) -> list[Incarnation]:
    """Split each task id's history at its `deleted` entries; the last part is the live task."""
    live = {t.id: t for t in source.store.tasks}
    history: dict[int, list[P1AuditLog]] = defaultdict(list)
    for entry in sorted(source.store.audit_logs, key=lambda e: e.id):
        if entry.task_id is not None:
            history[entry.task_id].append(entry)
    result: list[Incarnation] = []
    for task_id in sorted(set(live) | set(history)):
        current: list[P1AuditLog] = []
        for entry in history.get(task_id, []):
            current.append(entry)
            if entry.action == AuditAction.DELETED:
                result.append(_gone(task_id, current))
                current = []
        if task_id in live:
            result.append(Incarnation(task_id, f"task:{task_id}", live[task_id], current))
        elif current:
            result.append(_gone(task_id, current))
    return result


def work_times(entries: list[P1AuditLog], task: P1Task) -> dict[str, datetime | None]:
    """`started_at` and `completed_at` from a task's Phase 1 history (which has no such fields):
    its first `started`, and its last `completed` or `approved` while it is still completed."""
    started = next((e.timestamp for e in entries if e.action == AuditAction.STARTED), None)
    done = [e.timestamp for e in entries if e.action in _COMPLETING]
    completed = done[-1] if done and task.status is TaskStatus.COMPLETED else None
    return {"started_at": started, "completed_at": completed}


_COMPLETING = (AuditAction.COMPLETED, AuditAction.APPROVED)


def _gone(task_id: int, entries: list[P1AuditLog]) -> Incarnation:
    return Incarnation(task_id, f"task:{task_id}:deleted:{entries[0].id}", None, entries)


class _Import:
    """One run of the importer inside one open transaction."""

    def __init__(
        self, session: AsyncSession, actor: Actor, source: Phase1Source, progress: Progress
    ) -> None:
        self.session = session
        self.actor = actor
        self.source = source
        self.store = source.store
        self.progress = progress
        self.prefix = f"phase1:{source.store_key}:"
        self.done: dict[str, int] = {}
        self.new_records: list[dict[str, Any]] = []
        self.workers: dict[str, int] = {}
        self.projects: dict[str, int] = {}
        self.task_ids: dict[str, int] = {}
        self.task_projects: dict[str, int] = {}
        self.report = ImportReport(source=str(source.path), store_key=source.store_key)
        self.pending_imported: list[dict[str, Any]] = []
        self.task_index = {t.id: i for i, t in enumerate(source.store.tasks)}

    # ---------------------------------------------------------------- bookkeeping

    async def load_records(self) -> None:
        rows = await self.session.execute(
            select(ImportRecord.source_key, ImportRecord.entity_id).where(
                ImportRecord.source_key.startswith(self.prefix, autoescape=True)
            )
        )
        self.done = {key[len(self.prefix) :]: int(entity_id) for key, entity_id in rows}

    def note(self, key: str, entity_type: str, entity_id: int) -> None:
        self.done[key] = entity_id
        self.new_records.append(
            {"source_key": self.prefix + key, "entity_type": entity_type, "entity_id": entity_id}
        )

    def skipped(self) -> None:
        self.report.already_imported += 1
        self.progress(1)

    def imported_later(self, entity_type: str, entity_id: int, **kwargs: Any) -> None:
        """Queue an `imported` entry: written after the history, so each chain stays in time
        order (Phase 1's past first, then the moment it was imported)."""
        self.pending_imported.append({"entity_type": entity_type, "entity_id": entity_id, **kwargs})

    # ---------------------------------------------------------------- workers

    async def import_workers(self) -> None:
        for i, w in enumerate(self.store.workers):
            key = f"worker:{w.id}"
            if key in self.done:
                self.workers[w.id] = self.done[key]
                self.skipped()
                continue
            original = self.source.original("workers", i)
            existing = await self.session.scalar(select(Worker).where(Worker.handle == w.id))
            if existing is not None:
                if existing.type != w.type.value:
                    raise Conflict(
                        f"worker {w.id} exists here as a {existing.type} but is a {w.type} in "
                        "the Phase 1 store: nothing was imported",
                        field="workers",
                    )
                worker_id = existing.id
                self.report.workers_matched.append(w.id)
                details = {"matched_existing": True, "phase1": original}
            else:
                worker_id = await self._insert_worker(w)
                self.report.workers_created.append(w.id)
                details = {"phase1": original}
            self.workers[w.id] = worker_id
            self.note(key, "worker", worker_id)
            self.imported_later("worker", worker_id, details=details)
            self.progress(1)

    async def _insert_worker(self, w: Any) -> int:
        worker_id = await self.session.scalar(
            insert(Worker)
            .values(
                handle=w.id,
                name=w.name,
                type=w.type.value,
                agent_type=w.agent_type.value if w.type is WorkerType.AGENT else None,
                capabilities=list(w.capabilities),
                created_by_id=self.actor.worker_id,
                created_at=w.created_at,
            )
            .returning(Worker.id)
        )
        assert worker_id is not None
        return int(worker_id)

    async def worker_id(self, handle: str) -> int | None:
        if handle not in self.workers:
            self.workers[handle] = await self.session.scalar(
                select(Worker.id).where(Worker.handle == handle)
            )
        return self.workers[handle]

    # ---------------------------------------------------------------- projects

    async def import_projects(self) -> None:
        for i, p in enumerate(self.store.projects):
            key = f"project:{p.slug}"
            if key in self.done:
                self.projects[p.slug] = self.done[key]
                self.skipped()
                continue
            original = self.source.original("projects", i)
            existing = await self.session.scalar(select(Project.id).where(Project.slug == p.slug))
            if existing is not None:
                project_id = await self._mergeable(p.slug)
                self.report.projects_merged.append(p.slug)
                details = {"merged_into_existing": True, "phase1": original}
            else:
                project_id = await self._insert_project(p)
                self.report.projects_created.append(p.slug)
                details = {"phase1": original, "owner": self.actor.handle}
            self.projects[p.slug] = project_id
            self.note(key, "project", project_id)
            self.imported_later("project", project_id, project_id=project_id, details=details)
            self.progress(1)

    async def _mergeable(self, slug: str) -> int:
        try:
            project, _ = await project_with_role(self.session, self.actor, slug, Role.ADMIN)
        except NotFound:
            raise Conflict(
                f"project {slug!r} already exists here and you are not a member of it: ask its "
                "owner to make you an admin, then import again. Nothing was imported",
                field="projects",
            ) from None
        return project.id

    async def _insert_project(self, p: Any) -> int:
        project_id = await self.session.scalar(
            insert(Project)
            .values(
                slug=p.slug,
                name=p.name,
                description=p.description or "",
                owner_id=self.actor.worker_id,
            )
            .returning(Project.id)
        )
        assert project_id is not None
        await self.session.execute(
            insert(ProjectMember).values(
                project_id=project_id, worker_id=self.actor.worker_id, role=Role.OWNER.value
            )
        )
        return int(project_id)

    async def import_memberships(self) -> None:
        """Phase 1 had no permissions: every worker of the store may work on every project."""
        for slug, project_id in self.projects.items():
            for handle, worker_id in list(self.workers.items()):
                key = f"member:{slug}:{handle}"
                if key in self.done or worker_id is None or worker_id == self.actor.worker_id:
                    continue
                inserted = await self.session.scalar(
                    pg_insert(ProjectMember)
                    .values(project_id=project_id, worker_id=worker_id, role=Role.MEMBER.value)
                    .on_conflict_do_nothing()
                    .returning(ProjectMember.worker_id)
                )
                self.note(key, "member", worker_id)
                if inserted is None:
                    continue
                self.report.memberships_added += 1
                self.pending_imported.append(
                    {
                        "entity_type": "project",
                        "entity_id": project_id,
                        "project_id": project_id,
                        "action": AuditAction.MEMBER_ADDED,
                        "details": {"member": handle, "role": "member", "reason": "phase1 import"},
                    }
                )

    # ---------------------------------------------------------------- task ids

    async def plan_task_ids(self, incs: list[Incarnation]) -> None:
        """Keep each Phase 1 id when no task (live or deleted) uses it here; else take a new one.

        The table lock keeps other writers from taking an id between the check and the insert;
        the sequence is then moved past every kept id so later tasks never collide with them.
        """
        wanted = [inc for inc in incs if inc.key not in self.done]
        for inc in incs:
            if inc.key in self.done:
                self.task_ids[inc.key] = self.done[inc.key]
        if not wanted:
            return
        await self.session.execute(_LOCK_TASK_IDS)
        candidates = sorted({inc.phase1_id for inc in wanted})
        taken = set(
            await self.session.scalars(
                text(
                    "SELECT id FROM tasks WHERE id = ANY(:ids) UNION SELECT entity_id FROM "
                    "audit_heads WHERE entity_type = 'task' AND entity_id = ANY(:ids)"
                ),
                {"ids": candidates},
            )
        )
        renumber: list[Incarnation] = []
        # Live tasks first, so a deleted incarnation never takes the id its live successor keeps.
        for inc in sorted(wanted, key=lambda i: (i.task is None, i.key)):
            if inc.phase1_id in taken:
                renumber.append(inc)
            else:
                taken.add(inc.phase1_id)
                self.task_ids[inc.key] = inc.phase1_id
            if inc.task is None:
                self.report.deleted_task_histories += 1
        kept = [self.task_ids[i.key] for i in wanted if i.key in self.task_ids]
        if kept:
            await self.session.execute(
                text(
                    f"SELECT setval({_SEQUENCE}, GREATEST(:top, "
                    f"COALESCE(pg_sequence_last_value({_SEQUENCE}), 0)))"
                ),
                {"top": max(kept)},
            )
        for inc in renumber:
            new_id = int(await self.session.scalar(text(f"SELECT nextval({_SEQUENCE})")))
            self.task_ids[inc.key] = new_id
            if inc.task is not None:
                self.report.tasks_renumbered[inc.phase1_id] = new_id
        for inc in wanted:
            if inc.task is None:  # live tasks are noted when their row is written
                self.note(inc.key, "deleted_task", self.task_ids[inc.key])

    # ---------------------------------------------------------------- tasks

    async def import_tasks(self, incs: list[Incarnation]) -> None:
        by_id = {inc.phase1_id: inc for inc in incs if inc.task is not None}
        rows: list[dict[str, Any]] = []
        for inc in self._parents_first(by_id):
            task = inc.task
            assert task is not None
            self.task_projects[inc.key] = self.projects[self._effective_project(task, by_id)]
            if inc.key in self.done:
                self.skipped()
                continue
            rows.append(await self._task_row(inc, task, by_id))
            self.note(inc.key, "task", self.task_ids[inc.key])
            self.report.tasks_imported += 1
            self.progress(1)
        if rows:
            await self.session.execute(insert(Task), rows)

    def _parents_first(self, by_id: dict[int, Incarnation]) -> list[Incarnation]:
        def depth(task_id: int) -> int:
            n, parent = 0, by_id[task_id].task.parent_id  # type: ignore[union-attr]
            while parent is not None and parent in by_id:
                n, parent = n + 1, by_id[parent].task.parent_id  # type: ignore[union-attr]
            return n

        return sorted(by_id.values(), key=lambda inc: (depth(inc.phase1_id), inc.phase1_id))

    def _effective_project(self, task: P1Task, by_id: dict[int, Incarnation]) -> str:
        """A subtask lives in its root's project (Phase 2 keeps a subtree in one project)."""
        while task.parent_id is not None and task.parent_id in by_id:
            task = by_id[task.parent_id].task  # type: ignore[assignment]
        return task.project_slug

    async def _task_row(
        self, inc: Incarnation, task: P1Task, by_id: dict[int, Incarnation]
    ) -> dict[str, Any]:
        task_id = self.task_ids[inc.key]
        slug = self._effective_project(task, by_id)
        notes: dict[str, Any] = {}
        parent_id = None
        if task.parent_id is not None:
            if task.parent_id in by_id:
                parent_id = self.task_ids[by_id[task.parent_id].key]
            else:  # Phase 1's `delete` left it behind: it becomes a top-level task
                notes["detached_from_missing_parent"] = task.parent_id
                self.report.tasks_detached.append(task.id)
        if slug != task.project_slug:  # Phase 1's `add --parent` crossed projects
            notes["moved_from_project"] = task.project_slug
            notes["to_parent_project"] = slug
            self.report.tasks_moved.append(task.id)
        if task_id != task.id:
            notes["renumbered_from"] = task.id
        self.imported_later(
            "task",
            task_id,
            project_id=self.projects[slug],
            task_id=task_id,
            details={"phase1": self.source.original("tasks", self.task_index[task.id]), **notes},
        )
        return {
            "id": task_id,
            "project_id": self.projects[slug],
            "parent_id": parent_id,
            "title": task.title,
            "description": task.description or "",
            "status": task.status.value,
            "priority": task.priority.value,
            "progress_percent": task.progress_percent,
            "assignee_id": await self.worker_id(task.assigned_to) if task.assigned_to else None,
            "created_by_id": await self.worker_id(task.created_by),
            "tags": list(task.tags),
            "due_date": task.due_date,
            "recurrence": task.recurrence,
            **work_times(inc.entries, task),
            "created_at": task.created_at,
            "updated_at": task.updated_at,
        }

    # ---------------------------------------------------------------- history

    async def import_history(self, incs: list[Incarnation]) -> None:
        """Phase 1's entries, in their original order, with their original actor and time."""
        task_of = {e.id: inc for inc in incs for e in inc.entries}
        for entry in sorted(self.store.audit_logs, key=lambda e: e.id):
            key = f"audit:{entry.id}"
            if key in self.done:
                self.skipped()
                continue
            inc = task_of.get(entry.id)
            entry_id = await self._history_entry(entry, inc)
            self.note(key, "audit_entry", entry_id)
            self.report.audit_entries_imported += 1
            self.progress(1)

    async def _history_entry(self, entry: P1AuditLog, inc: Incarnation | None) -> int:
        project_id = self.projects.get(entry.project_slug or "")
        if inc is not None:
            task_id: int | None = self.task_ids[inc.key]
            entity_type, entity_id = "task", task_id
            project_id = self.task_projects.get(inc.key, project_id)
        elif project_id is not None:
            task_id, entity_type, entity_id = None, "project", project_id
        else:
            task_id, entity_type, entity_id = None, "phase1_store", 0
        provenance: dict[str, Any] = {
            "audit_id": entry.id,
            "task_id": entry.task_id,
            "project_slug": entry.project_slug,
        }
        if entry.model_extra:
            provenance["extra"] = entry.model_extra
        context = dict(entry.context)
        details = (
            {"context": context, "phase1": provenance}
            if "phase1" in context
            else {**context, "phase1": provenance}
        )
        actor_id = await self.worker_id(entry.actor_id)
        return await audit.record(
            self.session,
            self.actor,
            entity_type=entity_type,
            entity_id=entity_id,
            project_id=project_id,
            task_id=task_id,
            action=entry.action,
            details=details,
            created_at=entry.timestamp,
            actor_override=(actor_id, entry.actor_id, entry.actor_type.value),
        )

    # ---------------------------------------------------------------- finish

    async def write_imported_entries(self) -> None:
        source = {"source": "phase1", "store_key": self.source.store_key}
        await audit.record_many(
            self.session,
            self.actor,
            (
                {
                    **pending,
                    "action": pending.get("action", AuditAction.IMPORTED),
                    "details": {**pending["details"], **source},
                }
                for pending in self.pending_imported
            ),
        )
        if self.new_records:
            await self.session.execute(insert(ImportRecord), self.new_records)


async def import_phase1(
    db: Database, actor: Actor, source: Phase1Source, progress: Progress | None = None
) -> ImportReport:
    """Import a validated Phase 1 store as `actor`, all or nothing; re-running changes nothing."""
    importer_actor = actor.through(Via.IMPORT, actor.request_id or _request_id())
    async with db.transaction() as session:
        await session.execute(_LOCK_IMPORTS)
        report = await _run(session, importer_actor, source, progress)
    await analyze(db)  # the import may have multiplied the rows plans were made for
    return report


async def import_as_local_user(
    db: Database,
    source: Phase1Source,
    handle: str | None = None,
    progress: Progress | None = None,
    *,
    via: Via = Via.CORE,
    request_id: str | None = None,
) -> ImportReport:
    """A fresh install's first command: adopt the store's user as the local user, then import.

    Phase 1 users had one user, named in the store's `config.json` (`handle` overrides it).
    That user is set up as `taskflow init` would (a human worker, from their Phase 1 record when
    the store has one, and the `default` project they own), in the import's own transaction:
    a refused import leaves no half-made user behind. The report's `local_user` says who it is;
    remembering it as the local user is the caller's part.
    """
    handle = check_handle(handle or local_user_of(source))
    record = next((w for w in source.store.workers if w.id == handle), None)
    if record is not None and record.type is not WorkerType.HUMAN:
        raise ValidationFailed(
            f"{handle} is an agent in this Phase 1 store: the local user must be a human, so "
            "pass --user @you",
            field="user",
        )
    request_id = request_id or _request_id()
    async with db.transaction() as session:
        await session.execute(_LOCK_IMPORTS)
        setup = await onboarding.setup_local(
            session,
            handle,
            record.name if record else handle[1:],
            via=via,
            request_id=request_id,
            since=record.created_at if record else None,
            **_default_project_of(source),
        )
        actor = Actor(
            worker_id=setup.user.id,
            handle=handle,
            type=WorkerType.HUMAN,
            via=Via.IMPORT,
            request_id=request_id,
        )
        report = await _run(session, actor, source, progress)
        report.local_user = setup
    await analyze(db)
    return report


def local_user_of(source: Phase1Source) -> str:
    """The user a Phase 1 store names as its current one, or a refusal saying what to pass."""
    current = source.config.current_user if source.config else None
    if not current:
        raise ValidationFailed(
            f"the Phase 1 store at {source.path.parent} names no current user in its "
            "config.json: pass --user @you to say who you are",
            field="user",
        )
    return current


def _default_project_of(source: Phase1Source) -> dict[str, str]:
    """The store's own name and description for `default`, when they fit a Phase 2 project
    (else init's; the `imported` entry keeps the Phase 1 record either way)."""
    p = next((p for p in source.store.projects if p.slug == DEFAULT_PROJECT), None)
    if p is None:
        return {}
    try:
        fit = CreateProject(slug=p.slug, name=p.name, description=p.description or "")
    except ValidationError:
        return {}
    return {"project_name": fit.name, "project_description": fit.description}


def _request_id() -> str:
    return f"import-{uuid4().hex[:12]}"


async def _run(
    session: AsyncSession, actor: Actor, source: Phase1Source, progress: Progress | None
) -> ImportReport:
    run = _Import(session, actor, source, progress or (lambda n: None))
    await run.load_records()
    await run.import_workers()
    await run.import_projects()
    await run.import_memberships()
    incs = incarnations(source)
    await run.plan_task_ids(incs)
    await run.import_tasks(incs)
    await run.import_history(incs)
    await run.write_imported_entries()
    return run.report

"""Reading the audit trail: per task, per project, per actor, newest first, cursor-paginated.

A reader sees entries of the projects they belong to, plus entries outside any project (worker
registrations, API keys), which carry no project data.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import WorkerType, is_number
from taskflow.core.errors import NotFound, ValidationFailed
from taskflow.core.models import AuditEntry, ProjectMember
from taskflow.core.schemas import AuditEntryOut, AuditFilter, Page, VerifyOut
from taskflow.core.services.access import project_with_role


def entry_out(e: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=e.id,
        entity_type=e.entity_type,
        entity_id=e.entity_id,
        seq=e.seq,
        project_id=e.project_id,
        task_id=e.task_id,
        action=e.action,
        actor=e.actor_handle,
        actor_type=WorkerType(e.actor_type),
        details=e.details,
        request_id=e.request_id,
        via=e.via,
        created_at=e.created_at,
    )


def _decode(cursor: str) -> int:
    if not is_number(cursor):
        raise ValidationFailed(
            "invalid cursor: pass the next_cursor of the previous page unchanged", field="cursor"
        )
    return int(cursor)


def _visible_to(actor: Actor) -> ColumnElement[bool]:
    """Entries of the actor's projects, plus those outside any project."""
    mine = select(ProjectMember.project_id).where(ProjectMember.worker_id == actor.worker_id)
    return or_(AuditEntry.project_id.in_(mine), AuditEntry.project_id.is_(None))


async def list_audit(db: Database, actor: Actor, f: AuditFilter) -> Page[AuditEntryOut]:
    stmt = select(AuditEntry).where(_visible_to(actor))
    async with db.transaction() as session:
        if f.project is not None:
            project, _ = await project_with_role(session, actor, f.project)
            stmt = stmt.where(AuditEntry.project_id == project.id)
        if f.task_id is not None:
            stmt = stmt.where(AuditEntry.task_id == f.task_id)
        if f.actor:
            stmt = stmt.where(AuditEntry.actor_handle == f.actor)
        if f.action:
            stmt = stmt.where(AuditEntry.action == f.action)
        if f.since:
            stmt = stmt.where(AuditEntry.created_at >= f.since)
        if f.until:
            stmt = stmt.where(AuditEntry.created_at < f.until)
        if f.cursor:
            stmt = stmt.where(AuditEntry.id < _decode(f.cursor))
        stmt = stmt.order_by(AuditEntry.id.desc()).limit(f.limit + 1)
        entries = (await session.scalars(stmt)).all()
    if f.task_id is not None and not entries and not f.cursor:
        raise NotFound(
            f"no audit entries for task {f.task_id} that you can see: check the id",
            entity="task",
        )
    items = [entry_out(e) for e in entries[: f.limit]]
    more = len(entries) > f.limit
    return Page[AuditEntryOut](items=items, next_cursor=str(items[-1].id) if more else None)


async def get_entry(db: Database, actor: Actor, entry_id: int) -> AuditEntryOut:
    async with db.transaction() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.id == entry_id, _visible_to(actor))
        )
    if entry is None:
        raise NotFound(f"audit entry {entry_id} not found", entity="audit_entry")
    return entry_out(entry)


async def verify_log(db: Database, actor: Actor, *, with_digest: bool = True) -> VerifyOut:
    """Recompute every chain; any worker may check the log's integrity."""
    result = await audit.verify(db)
    return VerifyOut(
        ok=result.ok,
        entries_checked=result.entries_checked,
        chains_checked=result.chains_checked,
        problems=result.problems,
        digest=await audit.digest(db) if with_digest else None,
    )

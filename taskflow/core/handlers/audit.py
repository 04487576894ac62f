"""The audit trail: commands, handlers and declarations for reading and verifying it.

A reader sees entries of the projects they belong to, plus entries outside any project (worker
registrations, API keys), which carry no project data. Reads are newest first and
cursor-paginated; verification recomputes every hash chain in one snapshot of the log, and the
digest it answers with describes exactly the log it verified.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from sqlalchemy import ColumnElement, or_, select

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import WorkerType, is_number
from taskflow.core.errors import NotFound, RateLimited, ValidationFailed
from taskflow.core.models import AuditEntry, ProjectMember
from taskflow.core.schemas import AuditEntryOut, AuditFilter, Model, Page, VerifyOut
from taskflow.core.services.access import project_with_role, scope_clause
from taskflow.core.uow import UnitOfWork

TOOLSET = "audit"


class ListAudit(AuditFilter):
    pass  # `AuditFilter`'s fields, which the CLI and the MCP resource also build


class GetAuditEntry(Model):
    entry_id: Annotated[int, Field(ge=1, description="The entry's id")]


class VerifyAudit(Model):
    with_digest: bool = Field(
        default=True, description="Also answer a digest of the verified log, to store elsewhere"
    )


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
        actor_key=e.actor_key,
        client_request_id=e.client_request_id,
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
    limited = scope_clause(actor, ProjectMember.project_id)
    if limited is not None:  # a key limited to some projects sees only theirs
        mine = mine.where(limited)
    return or_(AuditEntry.project_id.in_(mine), AuditEntry.project_id.is_(None))


@declare(
    ListAudit,
    toolset=TOOLSET,
    read_only=True,
    mcp="get_audit_trail",
    rest=(  # the operationIds the hand-written endpoints had
        Route("GET", "/api/audit"),
        Route("GET", "/api/projects/{project}/audit", name="list_project_audit"),
        Route("GET", "/api/tasks/{task_id}/audit", name="list_task_audit"),
    ),
    cli="audit list",
)
async def list_audit(cmd: ListAudit, uow: UnitOfWork, actor: Actor) -> Page[AuditEntryOut]:
    """Who did what, newest first: filter by task_id, project, actor (handle), action or time.
    Pass next_cursor back as cursor for the next page."""
    stmt = select(AuditEntry).where(_visible_to(actor))
    if cmd.project is not None:
        project, _ = await project_with_role(uow.session, actor, cmd.project)
        stmt = stmt.where(AuditEntry.project_id == project.id)
    if cmd.task_id is not None:
        stmt = stmt.where(AuditEntry.task_id == cmd.task_id)
    if cmd.actor:
        stmt = stmt.where(AuditEntry.actor_handle == cmd.actor)
    if cmd.action:
        stmt = stmt.where(AuditEntry.action == cmd.action)
    if cmd.since:
        stmt = stmt.where(AuditEntry.created_at >= cmd.since)
    if cmd.until:
        stmt = stmt.where(AuditEntry.created_at < cmd.until)
    if cmd.cursor:
        stmt = stmt.where(AuditEntry.id < _decode(cmd.cursor))
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(cmd.limit + 1)
    entries = (await uow.session.scalars(stmt)).all()
    if cmd.task_id is not None and not entries and not cmd.cursor:
        raise NotFound(
            f"no audit entries for task {cmd.task_id} that you can see: check the id",
            entity="task",
        )
    items = [entry_out(e) for e in entries[: cmd.limit]]
    more = len(entries) > cmd.limit
    return Page[AuditEntryOut](items=items, next_cursor=str(items[-1].id) if more else None)


# Declared before `get_audit_entry`: the literal path /api/audit/verify must be routed before
# /api/audit/{entry_id}, which would otherwise take "verify" for an id.
@declare(
    VerifyAudit,
    toolset=TOOLSET,
    read_only=True,
    snapshot=True,
    mcp="verify_audit",
    rest=Route("GET", "/api/audit/verify"),
    cli="audit verify",
)
async def verify_audit(cmd: VerifyAudit, uow: UnitOfWork, actor: Actor) -> VerifyOut:
    """Recompute the audit log's hash chains: ok, or the first tampered entries; plus a digest
    worth storing elsewhere to compare later. Any worker may check; one check at a time."""
    if _VERIFYING:
        raise RateLimited(
            "another audit verification is running on this server (it re-hashes the whole "
            f"log): retry in {VERIFY_RETRY_SECONDS} s",
            retry_after=VERIFY_RETRY_SECONDS,
        )
    _VERIFYING.add(id(uow))
    try:
        raw = await audit.raw_connection(uow.session)
        last = await audit.settle_snapshot(uow.session) if cmd.with_digest else None
        result = await audit.verify_in(raw)
        return VerifyOut(
            ok=result.ok,
            entries_checked=result.entries_checked,
            chains_checked=result.chains_checked,
            problems=result.problems,
            digest=None if last is None else await audit.digest_in(raw, last),
        )
    finally:
        _VERIFYING.discard(id(uow))


VERIFY_RETRY_SECONDS = 5
_VERIFYING: set[int] = set()
"""The verification running in this process, if any: whole-log re-hashes take seconds and
memory, so a second one waits for its turn rather than doubling both (decision 69)."""


@declare(
    GetAuditEntry,
    toolset=TOOLSET,
    read_only=True,
    mcp="get_audit_entry",
    rest=Route("GET", "/api/audit/{entry_id}"),
    cli="audit show",
)
async def get_audit_entry(cmd: GetAuditEntry, uow: UnitOfWork, actor: Actor) -> AuditEntryOut:
    """Read one audit entry by id, with all its details."""
    entry = await uow.session.scalar(
        select(AuditEntry).where(AuditEntry.id == cmd.entry_id, _visible_to(actor))
    )
    if entry is None:
        raise NotFound(f"audit entry {cmd.entry_id} not found", entity="audit_entry")
    return entry_out(entry)

"""The audit trail: per project, per task, one entry, and the integrity check."""

from __future__ import annotations

from taskflow.core.schemas import AuditEntryOut, AuditFilter, Page, VerifyOut
from taskflow.core.services import history
from taskflow.http.endpoint import Call, Endpoints

endpoints = Endpoints("audit")


@endpoints.get(
    "/api/projects/{project}/audit",
    operation="list_audit",
    query=AuditFilter,
    from_path={"project"},
    response=Page[AuditEntryOut],
)
async def list_project_audit(call: Call) -> Page[AuditEntryOut]:
    """A project's audit entries, newest first, filtered by actor, action and time."""
    return await history.list_audit(call.db, call.actor, call.query)


@endpoints.get(
    "/api/tasks/{task_id}/audit",
    query=AuditFilter,
    from_path={"task_id"},
    response=Page[AuditEntryOut],
)
async def list_task_audit(call: Call) -> Page[AuditEntryOut]:
    """A task's audit entries, newest first."""
    return await history.list_audit(call.db, call.actor, call.query)


@endpoints.get("/api/audit", query=AuditFilter, response=Page[AuditEntryOut])
async def list_audit(call: Call) -> Page[AuditEntryOut]:
    """Audit entries you may see (your projects, plus worker and key events), newest first."""
    return await history.list_audit(call.db, call.actor, call.query)


@endpoints.get("/api/audit/verify", operation="verify_audit", response=VerifyOut)
async def verify_audit(call: Call) -> VerifyOut:
    """Recompute every hash chain of the audit log; names the first tampered entry, if any."""
    return await history.verify_log(call.db, call.actor)


@endpoints.get("/api/audit/{entry_id}", operation="get_audit_entry", response=AuditEntryOut)
async def get_audit_entry(call: Call) -> AuditEntryOut:
    """Read one audit entry."""
    return await history.get_entry(call.db, call.actor, call.path["entry_id"])

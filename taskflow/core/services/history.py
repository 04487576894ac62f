"""Reading and verifying the audit trail, called the pre-kernel way: `(db, actor, ...)`.

The operations live in `taskflow.core.handlers.audit`, declared once and run by the dispatcher
in one unit of work; these wrappers keep the CLI's, the MCP resource's and the tests' calls
working, each building the command and dispatching it.
"""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.handlers import audit as ops
from taskflow.core.schemas import AuditEntryOut, AuditFilter, Page, VerifyOut

__all__ = ["get_entry", "list_audit", "verify_log"]


async def list_audit(db: Database, actor: Actor, f: AuditFilter) -> Page[AuditEntryOut]:
    return await run(db, actor, ops.ListAudit(**f.model_dump(exclude_unset=True)))


async def get_entry(db: Database, actor: Actor, entry_id: int) -> AuditEntryOut:
    return await run(db, actor, ops.GetAuditEntry(entry_id=entry_id))


async def verify_log(db: Database, actor: Actor, *, with_digest: bool = True) -> VerifyOut:
    """Recompute every chain; any worker may check the log's integrity."""
    return await run(db, actor, ops.VerifyAudit(with_digest=with_digest))

"""Whole-database snapshots, for tests that prove a refused call changed nothing."""

from __future__ import annotations

from sqlalchemy import text

from taskflow.core.db import Database

TABLES = (
    "workers",
    "projects",
    "project_members",
    "tasks",
    "api_keys",
    "audit_log",
    "audit_heads",
    "idempotency_keys",
    "import_records",
    "webhooks",
    "webhook_deliveries",
    "webhook_attempts",
    "task_reminders",
)


async def snapshot(db: Database) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every table: equal snapshots mean nothing changed."""
    out: dict[str, tuple[int, str]] = {}
    async with db.engine.connect() as conn:
        for table in TABLES:
            row = (
                await conn.execute(
                    text(
                        f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text),"
                        f" '')) FROM {table} x"
                    )
                )
            ).one()
            out[table] = (int(row[0]), str(row[1]))
    return out

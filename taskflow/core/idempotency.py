"""Replaying the first answer to a retried request that carries an idempotency key.

Operations dispatched through the kernel (`taskflow.core.dispatcher`) use `replay_or_reserve`
and `remember`, which run inside the operation's own transaction: the key, the change, its audit
entries and the stored answer commit together or not at all. `run_once` below is the older
wrapper, in three transactions, that the surfaces use until they dispatch through the kernel.

A key is reserved before the operation runs and its answer stored after, per worker. A retry
with the same key and body gets the stored answer and writes nothing new; the same key with a
different body is refused; a retry while the first is still running gets a conflict. Keys
expire after 24 hours. If the operation fails, the reservation is dropped so a retry can run.

A reservation can outlive its request when the database goes away mid-request (the reservation
was committed, then the operation fails and dropping the reservation fails too). It must not
block the key for 24 hours: once the request that made it cannot still be running (the database
restarted since, or `LEASE` passed), a retry takes it over. Whether that first request's
operation committed before the outage is read from the audit log (its request id is kept on the
pending reservation): if it did, the retry is refused rather than applied twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.errors import Conflict, ValidationFailed
from taskflow.core.models import AuditEntry, IdempotencyRecord

TTL = timedelta(hours=24)
LEASE = timedelta(minutes=5)
"""How long an unanswered reservation may belong to a live request (statements time out at 30 s)."""
PENDING = "pending_request_id"


def request_hash(scope: str, body: Any) -> str:
    raw = json.dumps([scope, to_jsonable_python(body)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def _reserve(db: Database, actor: Actor, key: str, scope: str, digest: str) -> Any | None:
    """Reserve the key; return the stored (status, body) when this is a replay."""
    async with db.transaction() as session:
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.worker_id == actor.worker_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.created_at < datetime.now(UTC) - TTL,
            )
        )
        inserted = await session.scalar(
            insert(IdempotencyRecord)
            .values(
                worker_id=actor.worker_id,
                key=key,
                scope=scope,
                request_hash=digest,
                response={PENDING: actor.request_id},
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        if inserted is not None:
            return None
        record = await session.scalar(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.worker_id == actor.worker_id, IdempotencyRecord.key == key)
            .with_for_update()
        )
        assert record is not None
        if (
            record.status_code is None
            and record.request_hash == digest
            and await _abandoned(session, record)
        ):
            await _refuse_if_applied(session, actor, record)
            record.created_at = func.now()  # type: ignore[assignment]
            record.response = {PENDING: actor.request_id}
            return None
    if record.request_hash != digest:
        raise ValidationFailed(
            "this idempotency key was already used for a different request: use a new key for "
            "a new request",
            field="idempotency_key",
        )
    if record.status_code is None:
        raise Conflict(
            "a request with this idempotency key is still being processed: retry in a moment"
        )
    return (record.status_code, record.response)


_ABANDONED = text(
    "SELECT CAST(:made AS timestamptz) < pg_postmaster_start_time() "
    "OR CAST(:made AS timestamptz) < now() - CAST(:lease AS interval)"
)


async def _abandoned(session: Any, record: IdempotencyRecord) -> bool:
    """Can the request that reserved this key no longer be running? Every connection dies with
    a database restart, and no request lives longer than the lease."""
    return bool(await session.scalar(_ABANDONED, {"made": record.created_at, "lease": LEASE}))


async def _refuse_if_applied(session: Any, actor: Actor, record: IdempotencyRecord) -> None:
    """The abandoned request's operation committed if its request id is in the audit log (every
    change writes an entry in the change's own transaction)."""
    request_id = (record.response or {}).get(PENDING)
    if not request_id:
        return
    applied = await session.scalar(
        select(AuditEntry.id)
        .where(AuditEntry.actor_handle == actor.handle, AuditEntry.request_id == request_id)
        .limit(1)
    )
    if applied is not None:
        raise Conflict(
            "the first request with this idempotency key was applied, but the database went "
            "away before its answer was stored: read the current state instead of retrying"
        )


async def run_once(
    db: Database,
    actor: Actor,
    key: str | None,
    scope: str,
    body: Any,
    operation: Callable[[], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any, bool]:
    """Run `operation` once per (worker, key); returns (status, body, replayed)."""
    if not key:
        status, result = await operation()
        return status, result, False
    if len(key) > 255:
        raise ValidationFailed("idempotency key too long (max 255 characters)", field="key")
    digest = request_hash(scope, body)
    stored = await _reserve(db, actor, key, scope, digest)
    if stored is not None:
        return stored[0], stored[1], True
    try:
        status, result = await operation()
    except BaseException:
        async with db.transaction() as session:
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.worker_id == actor.worker_id, IdempotencyRecord.key == key
                )
            )
        raise
    async with db.transaction() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.worker_id == actor.worker_id, IdempotencyRecord.key == key)
            .values(status_code=status, response=to_jsonable_python(result))
        )
    return status, result, False


async def replay_or_reserve(
    session: Any, actor: Actor, key: str, scope: str, body: Any
) -> Any | None:
    """Inside the operation's transaction: the stored answer for a repeated key, else None after
    reserving the key for this transaction.

    A concurrent request with the same key waits on the unique index until the first one commits
    (then it replays its answer) or rolls back (then it runs itself), so two never both apply.
    """
    if len(key) > 255:
        raise ValidationFailed("idempotency key too long (max 255 characters)", field="key")
    digest = request_hash(scope, body)
    mine = (IdempotencyRecord.worker_id == actor.worker_id) & (IdempotencyRecord.key == key)
    await session.execute(
        delete(IdempotencyRecord).where(
            mine, IdempotencyRecord.created_at < datetime.now(UTC) - TTL
        )
    )
    inserted = await session.scalar(
        insert(IdempotencyRecord)
        .values(worker_id=actor.worker_id, key=key, scope=scope, request_hash=digest)
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.key)
    )
    if inserted is not None:
        return None
    record = await session.scalar(select(IdempotencyRecord).where(mine))
    if record is None or record.request_hash != digest:
        raise ValidationFailed(
            "this idempotency key was already used for a different request: use a new key for "
            "a new request",
            field="idempotency_key",
        )
    if record.status_code is None:  # reserved by `run_once` and not answered yet
        raise Conflict(
            "a request with this idempotency key is still being processed: retry in a moment"
        )
    return record.response


async def remember(session: Any, actor: Actor, key: str, status: int, answer: Any) -> None:
    """Store the answer in the operation's transaction, for every retry with the same key."""
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.worker_id == actor.worker_id, IdempotencyRecord.key == key)
        .values(status_code=status, response=to_jsonable_python(answer))
    )

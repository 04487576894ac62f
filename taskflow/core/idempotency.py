"""Replaying the first answer to a retried request that carries an idempotency key.

The dispatcher (`taskflow.core.dispatcher`) calls `replay_or_reserve` and `remember` inside the
operation's own transaction, so the key, the change, its audit entries and the stored answer
commit together or not at all. A retry after a crash therefore finds either the committed answer
or nothing (and then runs, once): no leases, no pending reservations to clean up.

Keys are per worker and expire after 24 hours. A retry with the same key and body gets the
stored answer and writes nothing; the same key with a different body is refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from taskflow.core.actor import Actor
from taskflow.core.errors import ValidationFailed
from taskflow.core.models import IdempotencyRecord

TTL = timedelta(hours=24)


def request_hash(scope: str, body: Any) -> str:
    """What identifies "the same request": the operation's scope and its arguments."""
    raw = json.dumps([scope, to_jsonable_python(body)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


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
    return record.response


async def remember(session: Any, actor: Actor, key: str, status: int, answer: Any) -> None:
    """Store the answer in the operation's transaction, for every retry with the same key."""
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.worker_id == actor.worker_id, IdempotencyRecord.key == key)
        .values(status_code=status, response=to_jsonable_python(answer))
    )

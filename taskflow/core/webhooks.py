"""Webhook deliveries: signing (Standard Webhooks) and the delivery worker.

A change's deliveries are already in the outbox (`webhook_deliveries`) when its transaction
commits: a trigger on `audit_log` wrote them beside its entry (migration 0008). `deliver_due`
claims the deliveries that are due (`FOR UPDATE SKIP LOCKED`, so replicas share the work and
never send one twice at once), leases them for the length of one attempt, POSTs each outside
any transaction, then records the attempt in the delivery log (`webhook_attempts`): a 2xx
delivers it, anything else schedules a retry after `base * 2^(attempt-1)` seconds (capped);
after the last attempt the delivery is `failed` and its hook is disabled, with a
`webhook_disabled` audit entry by `@system`.

Signatures follow the Standard Webhooks specification: headers `webhook-id` (the delivery's id,
the same on every retry), `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the secret's base64 part).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.request import getproxies

import httpx
from sqlalchemy import text

from taskflow.core import audit, egress
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import AuditAction
from taskflow.core.signing import message_id, signed_headers, still_signing
from taskflow.core.system import system_actor

log = logging.getLogger("taskflow.webhooks")

BATCH = 50
_ERROR_CHARS = 500


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return min(
        settings.webhook_retry_base_seconds * 2 ** (attempt - 1), settings.webhook_retry_max_seconds
    )


_CLAIM = text(
    """
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1,
           next_attempt_at = now() + make_interval(secs => :lease)
      FROM (SELECT d2.id FROM webhook_deliveries d2
              JOIN webhooks w ON w.id = d2.webhook_id
             WHERE d2.status = 'pending' AND d2.next_attempt_at <= now() AND w.enabled
             ORDER BY d2.next_attempt_at, d2.id
             LIMIT :batch
             FOR UPDATE OF d2 SKIP LOCKED) due,
           webhooks w
     WHERE d.id = due.id AND w.id = d.webhook_id
    RETURNING d.id, d.webhook_id, d.audit_id, d.event, d.attempts, w.url, w.secret,
              w.previous_secret, w.previous_secret_expires_at
    """
)

_ENTRIES = text(
    """
    SELECT a.id, a.entity_type, a.entity_id, a.project_id, p.slug AS project, a.task_id,
           a.action, a.actor_handle, a.actor_type, a.details, a.via, a.request_id, a.created_at
    FROM audit_log a LEFT JOIN projects p ON p.id = a.project_id
    WHERE a.id = ANY(:ids)
    """
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    webhook_id: int
    audit_id: int
    event: str
    attempt: int
    url: str
    secret: str
    previous_secret: str | None = None
    """A rotated-out secret still in its overlap: it signs too."""

    @property
    def msg_id(self) -> str:
        return message_id(self.id)


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def body_of(delivery: Claimed, entry: dict[str, Any]) -> bytes:
    """The JSON a receiver gets: the event's type, when it happened, and the audit entry."""
    created: datetime = entry["created_at"]
    data = {
        "entry_id": entry["id"],
        "entity_type": entry["entity_type"],
        "entity_id": entry["entity_id"],
        "project": entry["project"],
        "project_id": entry["project_id"],
        "task_id": entry["task_id"],
        "action": entry["action"],
        "actor": {"handle": entry["actor_handle"], "type": entry["actor_type"]},
        "details": entry["details"],
        "via": entry["via"],
        "request_id": entry["request_id"],
        "created_at": created.astimezone(UTC).isoformat(),
    }
    document = {
        "type": delivery.event,
        "timestamp": created.astimezone(UTC).isoformat(),
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


async def _post(client: httpx.AsyncClient, delivery: Claimed, body: bytes) -> Outcome:
    started = time.perf_counter()
    try:
        headers = signed_headers(
            delivery.secret, delivery.msg_id, body, also=delivery.previous_secret
        )
        response = await client.post(delivery.url, content=body, headers=headers)
        status, error = response.status_code, None
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:_ERROR_CHARS]}".strip()
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
    return Outcome(status, error, round((time.perf_counter() - started) * 1000))


_LOG_ATTEMPT = text(
    """
    INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
    VALUES (:id, :attempt, :status, :error, :ms)
    """
)
_DELIVERED = text(
    """
    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),
           last_status = :status, last_error = NULL
    WHERE id = :id
    """
)
_RETRY = text(
    """
    UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => :wait),
           last_status = :status, last_error = :error
    WHERE id = :id
    """
)
_FAILED = text(
    """
    UPDATE webhook_deliveries SET status = 'failed', last_status = :status, last_error = :error
    WHERE id = :id
    """
)
_LOCK_DELIVERY = text("SELECT id FROM webhook_deliveries WHERE id = :id FOR UPDATE")
_HOOK_FAILED = text("UPDATE webhooks SET failures = failures + 1 WHERE id = :id RETURNING failures")
_HOOK_OK = text("UPDATE webhooks SET failures = 0 WHERE id = :id AND failures <> 0")
_DISABLE = text(
    """
    UPDATE webhooks SET enabled = false, disabled_at = now(), disabled_reason = :reason,
           version = version + 1, updated_at = now()
    WHERE id = :id AND enabled
    RETURNING project_id, url, failures
    """
)


async def _record(db: Database, settings: Settings, delivery: Claimed, outcome: Outcome) -> None:
    """The attempt in the delivery log, and what follows from it, in one transaction."""
    params = {"id": delivery.id, "status": outcome.status_code, "error": outcome.error}
    async with db.transaction() as session:
        if await session.scalar(_LOCK_DELIVERY, {"id": delivery.id}) is None:
            return  # its hook was deleted meanwhile: nothing left to log
        await session.execute(
            _LOG_ATTEMPT, {**params, "attempt": delivery.attempt, "ms": outcome.duration_ms}
        )
        if outcome.ok:
            await session.execute(_DELIVERED, params)
            await session.execute(_HOOK_OK, {"id": delivery.webhook_id})
            return
        failures = await session.scalar(_HOOK_FAILED, {"id": delivery.webhook_id})
        if delivery.attempt < settings.webhook_max_attempts:
            wait = backoff(settings, delivery.attempt)
            await session.execute(_RETRY, {**params, "wait": wait})
            return
        await session.execute(_FAILED, params)
        # The audit log is append-only and every member reads it: the reason names the status
        # or the kind of error, never the receiver's answer (that stays in the delivery log).
        last = f"HTTP {outcome.status_code}" if outcome.status_code else _kind(outcome.error)
        reason = (
            f"delivery {delivery.msg_id} ({delivery.event}) failed {delivery.attempt} times; "
            f"last: {last}"
        )
        disabled = await session.execute(_DISABLE, {"id": delivery.webhook_id, "reason": reason})
        hook = disabled.first()
        if hook is None:  # disabled meanwhile (by an admin, or another replica)
            return
        await audit.record(
            session,
            await system_actor(session),
            entity_type="webhook",
            entity_id=delivery.webhook_id,
            project_id=hook.project_id,
            action=AuditAction.WEBHOOK_DISABLED,
            details={
                "webhook": delivery.webhook_id,
                "reason": reason,
                "failures": failures,
                "delivery": delivery.msg_id,
            },
        )
        log.warning("webhook %s disabled: %s", delivery.webhook_id, reason)


def _kind(error: str | None) -> str:
    return (error or "error").split(":", 1)[0]


async def deliver_due(
    db: Database, settings: Settings, client: httpx.AsyncClient, *, batch: int = BATCH
) -> int:
    """Deliver (or retry) every delivery that is due now, a batch at a time; how many tried."""
    lease = settings.webhook_timeout_seconds + 30  # a crashed replica's claim comes back then
    async with db.transaction() as session:
        rows = (await session.execute(_CLAIM, {"lease": lease, "batch": batch})).mappings().all()
    if not rows:
        return 0
    claimed = [
        Claimed(
            id=r["id"],
            webhook_id=r["webhook_id"],
            audit_id=r["audit_id"],
            event=r["event"],
            attempt=r["attempts"],
            url=r["url"],
            secret=r["secret"],
            previous_secret=still_signing(r["previous_secret"], r["previous_secret_expires_at"]),
        )
        for r in rows
    ]
    async with db.transaction() as session:
        found = await session.execute(_ENTRIES, {"ids": [c.audit_id for c in claimed]})
        entries = {row["id"]: dict(row) for row in found.mappings()}

    async def one(delivery: Claimed) -> None:
        entry = entries.get(delivery.audit_id)
        if entry is None:  # cannot happen (the log is append-only); never retry forever
            outcome = Outcome(None, "the audit entry is gone", 0)
        else:
            outcome = await _post(client, delivery, body_of(delivery, entry))
        await _record(db, settings, delivery, outcome)

    await asyncio.gather(*(one(c) for c in claimed))
    return len(claimed)


def client_for(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client deliveries go out on: no redirects followed, one timeout per attempt,
    and only to public addresses (`egress`). With `HTTPS_PROXY`/`HTTP_PROXY` set the deliveries
    go through that proxy instead, which then decides where they may go;
    `WEBHOOK_ALLOW_PRIVATE_URLS` lets them reach any address."""
    timeout = settings.webhook_timeout_seconds
    if settings.webhook_allow_private_urls or _proxied():
        return httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    transport = egress.PublicOnlyTransport()
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport)


def _proxied() -> bool:
    """An HTTP(S) proxy is configured for this process (httpx would send through it)."""
    return any(scheme in getproxies() for scheme in ("http", "https", "all"))

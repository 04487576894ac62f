"""A project's webhooks: create, list, update, delete, and their delivery log.

Project admins (and owners) manage them; members are refused, non-members do not see the
project. A hook has a URL (http or https), an event filter (audit actions such as `completed`,
`due_soon`, or `*` for every event of the project) and a secret (`whsec_...`), shown only in
`create_webhook`'s answer, like an API key. Deliveries are written by the database in the
transaction of each change (`taskflow.core.webhooks`); `list_webhook_deliveries` reads their
log. Audit entries name a hook's URL by its origin only: paths and queries often hold tokens,
and every member reads the project's log.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select, update

from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import AuditAction, DeliveryStatus, Role
from taskflow.core.errors import Conflict, NextStep, NotFound, ValidationFailed
from taskflow.core.handlers.projects import check_version
from taskflow.core.models import Project, Webhook, WebhookAttempt, WebhookDelivery, Worker
from taskflow.core.schemas import Model, ProjectRef, Version
from taskflow.core.services.access import project_with_role
from taskflow.core.signing import (
    MESSAGE_PREFIX,
    delivery_of,
    message_id,
    new_secret,
    still_signing,
)
from taskflow.core.uow import UnitOfWork

HOOKS = "hooks"
ENTITY = "webhook"
ALL_EVENTS = "*"

WebhookId = Annotated[int, Field(ge=1, description="The webhook's id, from list_webhooks")]
Url = Annotated[str, Field(min_length=1, max_length=2000, description="http(s) URL to POST to")]
Events = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=40)]],
    Field(
        min_length=1,
        max_length=50,
        description="Audit actions to send (created, completed, due_soon, overdue...); * = all",
    ),
]
Description = Annotated[str, Field(max_length=1000)]


class CreateWebhook(Model):
    project: ProjectRef
    url: Url
    events: Events = Field(default_factory=lambda: [ALL_EVENTS])
    description: Description = ""


class ListWebhooks(Model):
    project: ProjectRef


class UpdateWebhook(Model):
    project: ProjectRef
    webhook_id: WebhookId
    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = Field(
        default=None, description="false pauses it; true resumes it (also after auto-disable)"
    )
    expected_version: Version = None


class DeleteWebhook(Model):
    project: ProjectRef
    webhook_id: WebhookId


DeliveryId = Annotated[
    str,
    Field(
        pattern=rf"^{MESSAGE_PREFIX}[0-9]{{1,18}}$",
        description="The delivery's id (msg_...), as listed",
    ),
]


class RedeliverWebhookDelivery(Model):
    project: ProjectRef
    webhook_id: WebhookId
    delivery_id: DeliveryId


DAY = 24 * 3600


class RotateWebhookSecret(Model):
    project: ProjectRef
    webhook_id: WebhookId
    overlap_seconds: int = Field(
        default=DAY,
        ge=0,
        le=7 * DAY,
        description="How long the old secret keeps signing beside the new one (0: stop now)",
    )
    expected_version: Version = None


class ListWebhookDeliveries(Model):
    project: ProjectRef
    webhook_id: WebhookId
    status: DeliveryStatus | None = None
    limit: int = Field(default=50, ge=1, le=500, description="Newest first, at most this many")


class WebhookOut(BaseModel):
    id: int
    project: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failures: int = Field(description="Failed attempts since the last successful delivery")
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret a rotation replaced still signs beside the new one"
    )
    created_by: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class IssuedWebhook(BaseModel):
    webhook: WebhookOut
    secret: str = Field(description="whsec_...: verify signatures with it; shown only now")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str = Field(description="The webhook-id header the receiver got (same on every retry)")
    event: str
    entry_id: int
    status: DeliveryStatus
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptOut]


def check_url(url: str) -> str:
    """An absolute http:// or https:// URL with a host; anything else is refused."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            f"url must be an absolute http:// or https:// URL with a host (got {url!r})",
            field="url",
        )
    if parts.username or parts.password:
        raise ValidationFailed(
            "url must not carry a user name or password: the signature authenticates TaskFlow",
            field="url",
        )
    return url


def check_events(events: list[str]) -> list[str]:
    """Known audit actions (or `*`), each once, in the order given."""
    known = [a.value for a in AuditAction]
    chosen = list(dict.fromkeys(e.strip() for e in events))
    for name in chosen:
        if name != ALL_EVENTS and name not in known:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ValidationFailed(
                f"unknown event {name!r}: {hint}use * or any of {', '.join(known)}",
                field="events",
            )
    return [ALL_EVENTS] if ALL_EVENTS in chosen else chosen


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _hook_out(uow: UnitOfWork, hook: Webhook, slug: str) -> WebhookOut:
    creator = None
    if hook.created_by_id is not None:
        creator = await uow.session.scalar(
            select(Worker.handle).where(Worker.id == hook.created_by_id)
        )
    return WebhookOut(
        id=hook.id,
        project=slug,
        url=hook.url,
        events=list(hook.events),
        description=hook.description,
        enabled=hook.enabled,
        disabled_at=hook.disabled_at,
        disabled_reason=hook.disabled_reason,
        failures=hook.failures,
        previous_secret_expires_at=(
            hook.previous_secret_expires_at
            if still_signing(hook.previous_secret, hook.previous_secret_expires_at)
            else None
        ),
        created_by=creator,
        version=hook.version,
        created_at=hook.created_at,
        updated_at=hook.updated_at,
    )


async def _admin_project(uow: UnitOfWork, actor: Actor, ref: str) -> Project:
    project, _ = await project_with_role(uow.session, actor, ref, Role.ADMIN)
    return project


async def _hook(
    uow: UnitOfWork, project: Project, webhook_id: int, *, lock: bool = False
) -> Webhook:
    stmt = select(Webhook).where(Webhook.id == webhook_id, Webhook.project_id == project.id)
    hook = await uow.session.scalar(stmt.with_for_update() if lock else stmt)
    if hook is None:
        raise NotFound(
            f"project {project.slug} has no webhook {webhook_id}: list its webhooks for ids",
            entity="webhook",
            next_step=NextStep("list_webhooks", {"project": project.slug}),
        )
    return hook


async def _record(
    uow: UnitOfWork, actor: Actor, hook: Webhook, action: AuditAction, details: dict[str, Any]
) -> None:
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=hook.id,
        project_id=hook.project_id,
        action=action,
        details=details,
    )


@declare(
    CreateWebhook,
    toolset=HOOKS,
    mcp="create_webhook",
    rest=Route("POST", "/api/projects/{project}/webhooks", 201),
    cli="webhook add",
)
async def create_webhook(cmd: CreateWebhook, uow: UnitOfWork, actor: Actor) -> IssuedWebhook:
    """Add a webhook to a project (admins): signed POSTs of its events; the secret is shown once."""
    project = await _admin_project(uow, actor, cmd.project)
    hook = Webhook(
        project_id=project.id,
        url=check_url(cmd.url),
        events=check_events(cmd.events),
        description=cmd.description,
        secret=new_secret(),
        created_by_id=actor.worker_id,
    )
    uow.session.add(hook)
    await uow.session.flush()
    await uow.session.refresh(hook)
    await _record(
        uow,
        actor,
        hook,
        AuditAction.WEBHOOK_CREATED,
        {"new": {"url": _origin(hook.url), "events": hook.events, "description": hook.description}},
    )
    return IssuedWebhook(webhook=await _hook_out(uow, hook, project.slug), secret=hook.secret)


@declare(
    ListWebhooks,
    toolset=HOOKS,
    read_only=True,
    mcp="list_webhooks",
    rest=Route("GET", "/api/projects/{project}/webhooks"),
    cli="webhook list",
)
async def list_webhooks(cmd: ListWebhooks, uow: UnitOfWork, actor: Actor) -> list[WebhookOut]:
    """List a project's webhooks (admins): URL, events, enabled or why disabled; never secrets."""
    project = await _admin_project(uow, actor, cmd.project)
    hooks = await uow.session.scalars(
        select(Webhook).where(Webhook.project_id == project.id).order_by(Webhook.id)
    )
    return [await _hook_out(uow, h, project.slug) for h in hooks]


@declare(
    UpdateWebhook,
    toolset=HOOKS,
    idempotent=True,
    mcp="update_webhook",
    rest=Route("PATCH", "/api/projects/{project}/webhooks/{webhook_id}"),
    cli="webhook edit",
)
async def update_webhook(cmd: UpdateWebhook, uow: UnitOfWork, actor: Actor) -> WebhookOut:
    """Change a webhook's URL, events or description, or pause/resume it (admins)."""
    project = await _admin_project(uow, actor, cmd.project)
    hook = await _hook(uow, project, cmd.webhook_id, lock=True)
    check_version("webhook", hook.id, hook.version, cmd.expected_version)
    wanted: dict[str, Any] = {}
    if cmd.url is not None:
        wanted["url"] = check_url(cmd.url)
    if cmd.events is not None:
        wanted["events"] = check_events(cmd.events)
    if cmd.description is not None:
        wanted["description"] = cmd.description
    if cmd.enabled is not None:
        wanted["enabled"] = cmd.enabled
    changed = {k: v for k, v in wanted.items() if getattr(hook, k) != v}
    if not changed:  # a change that changes nothing writes nothing and keeps the version
        return await _hook_out(uow, hook, project.slug)
    values: dict[str, Any] = {**changed, "version": Webhook.version + 1, "updated_at": func.now()}
    if changed.get("enabled") is True:  # resumed: forget the failures, send what waited
        values |= {"disabled_at": None, "disabled_reason": None, "failures": 0}
        await uow.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hook.id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
            )
            .values(next_attempt_at=func.now())
        )
    elif changed.get("enabled") is False:
        values |= {"disabled_at": func.now(), "disabled_reason": f"paused by {actor.handle}"}
    shown = {k: _origin(v) if k == "url" else v for k, v in changed.items()}
    old = {k: _origin(hook.url) if k == "url" else getattr(hook, k) for k in changed}
    changes = {k: {"old": old[k], "new": shown[k]} for k in changed}
    await uow.session.execute(update(Webhook).where(Webhook.id == hook.id).values(**values))
    await uow.session.refresh(hook)
    await _record(uow, actor, hook, AuditAction.WEBHOOK_UPDATED, {"changes": changes})
    return await _hook_out(uow, hook, project.slug)


@declare(
    RedeliverWebhookDelivery,
    toolset=HOOKS,
    mcp="redeliver_webhook_delivery",
    rest=Route(
        "POST", "/api/projects/{project}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
    ),
    cli="webhook redeliver",
)
async def redeliver_webhook_delivery(
    cmd: RedeliverWebhookDelivery, uow: UnitOfWork, actor: Actor
) -> DeliveryOut:
    """Send a failed or delivered delivery again (admins), with a fresh round of attempts.

    The receiver gets the same `webhook-id` (it may drop what it has seen). The delivery goes
    at the housekeeper's next round, or once a disabled hook is resumed. A delivery still
    waiting is refused: it is already due, or in flight.
    """
    project = await _admin_project(uow, actor, cmd.project)
    hook = await _hook(uow, project, cmd.webhook_id, lock=True)
    number = delivery_of(cmd.delivery_id)
    delivery = await uow.session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == number, WebhookDelivery.webhook_id == hook.id)
        .with_for_update()
    )
    if delivery is None:
        raise NotFound(
            f"webhook {hook.id} has no delivery {cmd.delivery_id}: list its deliveries for ids",
            entity="delivery",
            next_step=NextStep(
                "list_webhook_deliveries", {"project": project.slug, "webhook_id": hook.id}
            ),
        )
    if delivery.status == DeliveryStatus.PENDING.value:
        raise Conflict(
            f"delivery {cmd.delivery_id} is still waiting to be sent (attempt "
            f"{delivery.attempts} so far): only a failed or delivered one is sent again",
            field="delivery_id",
        )
    was = delivery.status
    await uow.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=func.now(),
            delivered_at=None,
        )
    )
    await uow.session.refresh(delivery)
    await _record(
        uow,
        actor,
        hook,
        AuditAction.WEBHOOK_REDELIVERED,
        {"delivery": cmd.delivery_id, "event": delivery.event, "was": was},
    )
    [out] = await _deliveries_out(uow, [delivery])
    return out


@declare(
    RotateWebhookSecret,
    toolset=HOOKS,
    destructive=True,  # the old secret stops signing (at once with overlap_seconds=0)
    mcp="rotate_webhook_secret",
    rest=Route("POST", "/api/projects/{project}/webhooks/{webhook_id}/rotate-secret"),
    cli="webhook rotate-secret",
)
async def rotate_webhook_secret(
    cmd: RotateWebhookSecret, uow: UnitOfWork, actor: Actor
) -> IssuedWebhook:
    """Give a webhook a new signing secret (admins), shown once; the old one signs a day more.

    The old secret signs beside the new one for `overlap_seconds` (a day by default). During
    the overlap every POST, retries of earlier events too, carries both signatures
    (Standard Webhooks lists several in `webhook-signature`), so the receiver can move to the
    new secret without failing a delivery. `overlap_seconds=0` retires the old one at once (a
    leaked secret). Rotating again during an overlap retires the older one at once.
    """
    project = await _admin_project(uow, actor, cmd.project)
    hook = await _hook(uow, project, cmd.webhook_id, lock=True)
    check_version("webhook", hook.id, hook.version, cmd.expected_version)
    secret = new_secret()
    overlap = cmd.overlap_seconds > 0
    await uow.session.execute(
        update(Webhook)
        .where(Webhook.id == hook.id)
        .values(
            secret=secret,
            previous_secret=hook.secret if overlap else None,
            previous_secret_expires_at=(
                func.now() + timedelta(seconds=cmd.overlap_seconds) if overlap else None
            ),
            version=Webhook.version + 1,
            updated_at=func.now(),
        )
    )
    await uow.session.refresh(hook)
    until = hook.previous_secret_expires_at
    details = {
        "secret_rotated": True,
        "old_secret_signs_until": until.isoformat() if until else None,
    }
    await _record(uow, actor, hook, AuditAction.WEBHOOK_UPDATED, details)
    return IssuedWebhook(webhook=await _hook_out(uow, hook, project.slug), secret=secret)


@declare(
    DeleteWebhook,
    toolset=HOOKS,
    destructive=True,
    mcp="delete_webhook",
    rest=Route("DELETE", "/api/projects/{project}/webhooks/{webhook_id}", 204),
    cli="webhook delete",
)
async def delete_webhook(cmd: DeleteWebhook, uow: UnitOfWork, actor: Actor) -> None:
    """Delete a webhook and its delivery log (admins); nothing more is sent to it."""
    project = await _admin_project(uow, actor, cmd.project)
    hook = await _hook(uow, project, cmd.webhook_id, lock=True)
    await _record(
        uow,
        actor,
        hook,
        AuditAction.WEBHOOK_DELETED,
        {"old": {"url": _origin(hook.url), "events": list(hook.events)}},
    )
    await uow.session.execute(delete(Webhook).where(Webhook.id == hook.id))


@declare(
    ListWebhookDeliveries,
    toolset=HOOKS,
    read_only=True,
    mcp="list_webhook_deliveries",
    rest=Route("GET", "/api/projects/{project}/webhooks/{webhook_id}/deliveries"),
    cli="webhook deliveries",
)
async def list_webhook_deliveries(
    cmd: ListWebhookDeliveries, uow: UnitOfWork, actor: Actor
) -> list[DeliveryOut]:
    """A webhook's delivery log, newest first (admins): each event, its status and every attempt."""
    project = await _admin_project(uow, actor, cmd.project)
    hook = await _hook(uow, project, cmd.webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if cmd.status is not None:
        stmt = stmt.where(WebhookDelivery.status == cmd.status.value)
    deliveries = list(
        await uow.session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(cmd.limit))
    )
    return await _deliveries_out(uow, deliveries)


async def _deliveries_out(uow: UnitOfWork, deliveries: list[WebhookDelivery]) -> list[DeliveryOut]:
    """Deliveries with every attempt, oldest attempt first (a redelivery counts from 1 again)."""
    attempts: dict[int, list[AttemptOut]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await uow.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
        )
        for a in rows:
            attempts[a.delivery_id].append(
                AttemptOut(
                    attempt=a.attempt,
                    at=a.at,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
            )
    return [
        DeliveryOut(
            id=message_id(d.id),
            event=d.event,
            entry_id=d.audit_id,
            status=DeliveryStatus(d.status),
            next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.PENDING else None,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            attempts=attempts[d.id],
        )
        for d in deliveries
    ]

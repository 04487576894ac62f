"""Webhooks in the core: the outbox written with the change, signed deliveries a real receiver
verifies with the `standardwebhooks` package, retries with backoff, disabling with an audit
entry, who may manage hooks, and bad input."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import time
from datetime import UTC, datetime

import httpx
import pydantic
import pytest
from sqlalchemy import text
from standardwebhooks import Webhook as Verifier

from taskflow.core import audit, egress, webhooks
from taskflow.core.actor import Actor
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.dispatcher import run
from taskflow.core.domain import Role
from taskflow.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StaleVersion,
    ValidationFailed,
)
from taskflow.core.handlers import webhooks as ops
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks, workflow
from taskflow.core.signing import new_secret, sign, signed_headers
from tests.core.conftest import add_to, refused, sql
from tests.support.receiver import receiver


def fast(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "webhook_max_attempts": 3,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_timeout_seconds": 5,
        "webhook_allow_private_urls": True,  # the receivers here listen on loopback
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def hook(
    db: Database, actor: Actor, url: str, events: list[str] | None = None
) -> ops.IssuedWebhook:
    cmd = ops.CreateWebhook(project="web", url=url, **({"events": events} if events else {}))
    return await run(db, actor, cmd)


async def outbox(db: Database) -> list[dict]:
    rows = await sql(
        db, "SELECT webhook_id, audit_id, event, status FROM webhook_deliveries ORDER BY id"
    )
    return [dict(r._mapping) for r in rows]


async def test_secret_is_shown_once_and_signature_is_the_specs(db: Database, owner: Actor) -> None:
    issued = await hook(db, owner, "https://example.com/hook")
    assert issued.secret.startswith("whsec_") and len(base64.b64decode(issued.secret[6:])) == 32
    listed = await run(db, owner, ops.ListWebhooks(project="web"))
    assert [h.id for h in listed] == [issued.webhook.id]
    assert issued.secret not in listed[0].model_dump_json()
    # the spec's own example: secret, id, timestamp, body and the signature it publishes
    example = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert example == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_outbox_row_is_written_with_the_change_and_filtered(
    db: Database, owner: Actor
) -> None:
    every = await hook(db, owner, "http://127.0.0.1:9/all")
    done = await hook(db, owner, "http://127.0.0.1:9/done", ["completed"])
    await hook(db, owner, "http://127.0.0.1:9/elsewhere")  # same project; a paused one below
    paused = (await run(db, owner, ops.ListWebhooks(project="web")))[-1]
    await run(db, owner, ops.UpdateWebhook(project="web", webhook_id=paused.id, enabled=False))
    before = {(r["webhook_id"], r["event"]) for r in await outbox(db)}

    created = await tasks.create_task(db, owner, CreateTask(title="ship", project="web"))
    await tasks.create_task(db, owner, CreateTask(title="other project", project="default"))
    await workflow.start(db, owner, created.task.id)
    await workflow.complete(db, owner, created.task.id)

    rows = [r for r in await outbox(db) if (r["webhook_id"], r["event"]) not in before]
    mine = [(r["webhook_id"], r["event"]) for r in rows]
    assert mine == [
        (every.webhook.id, "task.created"),
        (every.webhook.id, "task.started"),
        (every.webhook.id, "task.completed"),
        (done.webhook.id, "task.completed"),
    ]
    entry_ids = await sql(
        db, "SELECT id FROM audit_log WHERE task_id = :t ORDER BY id", t=created.task.id
    )
    assert [r["audit_id"] for r in rows[:3]] == [e[0] for e in entry_ids]
    assert {r["status"] for r in rows} == {"pending"}


async def test_a_failed_change_leaves_no_delivery(db: Database, owner: Actor) -> None:
    await hook(db, owner, "http://127.0.0.1:9/all")
    before = await outbox(db)
    with pytest.raises(NotFound):  # the change fails after nothing: no entry, no delivery
        await workflow.start(db, owner, 999_999)
    # a change that fails after its entry was appended rolls the delivery back with it
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await audit.record(
                session, owner, entity_type="project", entity_id=1, project_id=2, action="updated"
            )
            assert len(await _count(session)) == len(before) + 1
            raise RuntimeError("boom")
    assert await outbox(db) == before


async def _count(session) -> list:
    return list(await session.execute(text("SELECT id FROM webhook_deliveries")))


async def test_a_receiver_gets_deliveries_it_verifies(db: Database, owner: Actor) -> None:
    with receiver(204) as far:
        issued = await hook(db, owner, far.url, ["created", "completed"])
        created = await tasks.create_task(db, owner, CreateTask(title="ship it", project="web"))
        settings = fast()
        async with webhooks.client_for(settings) as client:
            assert await webhooks.deliver_due(db, settings, client) == 1
            assert await webhooks.deliver_due(db, settings, client) == 0  # delivered: not again
        [got] = far.wait_for(1)
    payload = Verifier(issued.secret).verify(got.body, got.headers)
    assert payload["type"] == "task.created"
    assert payload["data"]["task_id"] == created.task.id
    assert payload["data"]["project"] == "web"
    assert payload["data"]["actor"] == {"handle": "@sarah", "type": "human"}
    assert payload["data"]["details"]["new"]["title"] == "ship it"
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    # a tampered body or another secret does not verify
    with pytest.raises(Exception, match="No matching signature"):
        Verifier(issued.secret).verify(got.body + b" ", got.headers)
    log = await run(
        db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=issued.webhook.id)
    )
    assert [(d.id, d.status, d.event) for d in log] == [
        (got.headers["webhook-id"], "delivered", "task.created")
    ]
    assert [(a.attempt, a.status_code, a.error) for a in log[0].attempts] == [(1, 204, None)]


async def test_a_failing_receiver_gets_retries_then_the_hook_is_disabled(
    db: Database, owner: Actor
) -> None:
    settings = fast()
    with receiver(500) as far:
        issued = await hook(db, owner, far.url, ["created"])
        await tasks.create_task(db, owner, CreateTask(title="doomed", project="web"))
        async with webhooks.client_for(settings) as client:
            tried = 0
            deadline = time.monotonic() + 10
            while tried < 3 and time.monotonic() < deadline:
                tried += await webhooks.deliver_due(db, settings, client)
                await asyncio.sleep(0.02)
            assert tried == 3
            await asyncio.sleep(0.3)
            assert await webhooks.deliver_due(db, settings, client) == 0  # given up
        got = far.wait_for(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one message, retried
    stamps = [int(r.headers["webhook-timestamp"]) for r in got]
    assert stamps == sorted(stamps)
    [state] = await run(db, owner, ops.ListWebhooks(project="web"))
    assert (state.enabled, state.failures) == (False, 3)
    assert "failed 3 times" in (state.disabled_reason or "")
    [delivery] = await run(
        db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=issued.webhook.id)
    )
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(1, 500), (2, 500), (3, 500)]
    assert all("HTTP 500" in (a.error or "") for a in delivery.attempts)
    # the retries waited: at least the first two backoffs (0.05 s, 0.1 s) between the attempts
    at = [a.at for a in delivery.attempts]
    assert (at[1] - at[0]).total_seconds() >= 0.05 and (at[2] - at[1]).total_seconds() >= 0.1
    [entry] = await sql(
        db,
        "SELECT actor_handle, actor_type, via, details FROM audit_log "
        "WHERE action = 'webhook_disabled' AND entity_id = :h",
        h=issued.webhook.id,
    )
    assert (entry.actor_handle, entry.actor_type, entry.via) == ("@system", "agent", "core")
    assert entry.details["failures"] == 3 and "HTTP 500" in entry.details["reason"]
    assert (await audit.verify(db)).ok
    # disabled: new changes queue nothing for it; resuming it clears the failures
    await tasks.create_task(db, owner, CreateTask(title="while off", project="web"))
    assert len(await outbox(db)) == 1
    resumed = await run(
        db, owner, ops.UpdateWebhook(project="web", webhook_id=issued.webhook.id, enabled=True)
    )
    assert (resumed.enabled, resumed.failures, resumed.disabled_reason) == (True, 0, None)


async def test_only_project_admins_manage_hooks(db: Database, owner: Actor) -> None:
    nina = await add_to(db, owner, "web", "@nina", Role.MEMBER)
    ada = await add_to(db, owner, "web", "@ada", Role.ADMIN)
    made = await hook(db, ada, "https://example.com/a")  # an admin may
    hook_id = made.webhook.id
    calls = [
        ops.CreateWebhook(project="web", url="https://example.com/x"),
        ops.ListWebhooks(project="web"),
        ops.UpdateWebhook(project="web", webhook_id=hook_id, enabled=False),
        ops.DeleteWebhook(project="web", webhook_id=hook_id),
        ops.ListWebhookDeliveries(project="web", webhook_id=hook_id),
    ]
    for cmd in calls:
        error = await refused(db, run(db, nina, cmd), Forbidden)
        assert "you are a member of project web" in str(error) and "admin" in str(error)
    outsider = await add_to(db, owner, "default", "@omar", Role.ADMIN)  # admin elsewhere
    for cmd in calls:
        await refused(db, run(db, outsider, cmd), NotFound, "not found, or you are not a member")
    await refused(
        db, run(db, owner, ops.DeleteWebhook(project="default", webhook_id=hook_id)), NotFound
    )
    await run(db, owner, ops.DeleteWebhook(project="web", webhook_id=hook_id))
    assert await run(db, owner, ops.ListWebhooks(project="web")) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://example.com/x"}, "url must be an absolute http:// or https:// URL"),
        ({"url": "example.com/hook"}, "url must be an absolute http:// or https:// URL"),
        ({"url": "http://"}, "url must be an absolute http:// or https:// URL"),
        ({"url": "https://u:p@example.com/"}, "must not carry a user name or password"),
        ({"events": ["complete"]}, "unknown event 'complete': did you mean 'completed'?"),
        ({"events": ["created", "exploded"]}, "unknown event 'exploded': use * or any of"),
    ],
)
async def test_bad_input_is_refused_clearly(
    db: Database, owner: Actor, fields: dict, message: str
) -> None:
    cmd = ops.CreateWebhook(project="web", **{"url": "https://example.com/h", **fields})
    error = await refused(db, run(db, owner, cmd), ValidationFailed, re.escape(message))
    assert error.extra["field"] == next(iter(fields))


async def test_empty_filter_and_unknown_fields_are_refused(db: Database, owner: Actor) -> None:
    create = REGISTRY["create_webhook"]
    with pytest.raises(InvalidInput, match="at least 1 item"):
        create.parse({"project": "web", "url": "https://e.com/", "events": []})
    with pytest.raises(InvalidInput, match="did you mean 'events'"):
        create.parse({"project": "web", "url": "https://e.com/", "event": ["created"]})


async def test_update_changes_only_what_differs_and_audits_origins(
    db: Database, owner: Actor
) -> None:
    made = await hook(db, owner, "https://example.com/secret-path?token=abc")
    hook_id = made.webhook.id
    same = await run(db, owner, ops.UpdateWebhook(project="web", webhook_id=hook_id, events=["*"]))
    assert same.version == made.webhook.version  # nothing changed, nothing written
    moved = await run(
        db,
        owner,
        ops.UpdateWebhook(
            project="web",
            webhook_id=hook_id,
            url="https://hooks.example.org/x?t=1",
            events=["due_soon", "overdue"],
            expected_version=1,
        ),
    )
    assert (moved.url, moved.events, moved.version) == (
        "https://hooks.example.org/x?t=1",
        ["due_soon", "overdue"],
        2,
    )
    rows = await sql(db, "SELECT details FROM audit_log WHERE entity_type = 'webhook' ORDER BY id")
    text_of = json.dumps([r.details for r in rows])
    assert "token" not in text_of and "secret-path" not in text_of and "t=1" not in text_of
    assert rows[-1].details["changes"]["url"] == {
        "old": "https://example.com",
        "new": "https://hooks.example.org",
    }


async def test_an_unreachable_receiver_and_a_hook_deleted_mid_delivery(
    db: Database, owner: Actor
) -> None:
    settings = fast(webhook_max_attempts=1)
    with receiver() as far:
        closed = far.url  # nothing listens there once the block ends
    issued = await hook(db, owner, closed, ["created"])
    await tasks.create_task(db, owner, CreateTask(title="nobody home", project="web"))
    async with webhooks.client_for(settings) as client:
        assert await webhooks.deliver_due(db, settings, client) == 1
    [state] = await run(db, owner, ops.ListWebhooks(project="web"))
    assert state.enabled is False
    [entry] = await sql(db, "SELECT details FROM audit_log WHERE action = 'webhook_disabled'")
    assert entry.details["reason"].endswith("last: ConnectError"), entry.details
    [delivery] = await run(
        db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=issued.webhook.id)
    )
    assert delivery.attempts[0].status_code is None
    assert "ConnectError" in (delivery.attempts[0].error or "")
    # a delivery whose hook is deleted while it is in flight: its outcome is simply dropped
    claimed = webhooks.Claimed(
        id=int(delivery.id.removeprefix("msg_")),
        webhook_id=issued.webhook.id,
        audit_id=delivery.entry_id,
        event=delivery.event,
        attempt=2,
        url=closed,
        secret=issued.secret,
    )
    await run(db, owner, ops.DeleteWebhook(project="web", webhook_id=issued.webhook.id))
    await webhooks._record(db, settings, claimed, webhooks.Outcome(500, "HTTP 500", 3))
    assert await outbox(db) == []


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No egress proxy in this process's environment, whatever the machine sets."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize(
    ("address", "public", "kind"),
    [
        ("8.8.8.8", True, None),
        ("2606:4700:4700::1111", True, None),
        ("127.0.0.1", False, "loopback"),
        ("10.1.2.3", False, "private"),
        ("172.16.0.1", False, "private"),
        ("192.168.1.1", False, "private"),
        ("169.254.169.254", False, "link-local"),  # a cloud's metadata service
        ("100.64.0.1", False, "non-public"),  # shared address space (CGNAT)
        ("0.0.0.0", False, "unspecified"),
        ("::1", False, "loopback"),
        ("fe80::1", False, "link-local"),
        ("fc00::1", False, "private"),
        ("::ffff:127.0.0.1", False, "loopback"),  # IPv4 written as IPv6
        ("::ffff:169.254.169.254", False, "link-local"),
        ("224.0.0.1", False, "multicast"),
        ("192.0.2.1", False, "private"),  # documentation range
    ],
)
def test_only_globally_routable_addresses_are_public(
    address: str, public: bool, kind: str | None
) -> None:
    parsed = ipaddress.ip_address(address)
    assert egress.is_public(parsed) is public
    if kind is not None:
        assert egress.kind_of(parsed) == kind


async def test_deliveries_to_private_addresses_are_refused_and_logged(
    db: Database, owner: Actor, no_proxy: None
) -> None:
    settings = fast(webhook_allow_private_urls=False, webhook_max_attempts=2)
    with receiver(204) as far:
        port = far.url.split(":")[2].split("/")[0]
        literal = await hook(db, owner, far.url, ["created"])
        named = await hook(db, owner, f"http://localhost:{port}/hook", ["created"])
        await tasks.create_task(db, owner, CreateTask(title="to nowhere", project="web"))
        async with webhooks.client_for(settings) as client:
            assert await webhooks.deliver_due(db, settings, client) == 2
        assert far.requests == []  # nothing reached the receiver
    errors = {}
    for issued in (literal, named):
        [delivery] = await run(
            db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=issued.webhook.id)
        )
        assert delivery.status == "pending"  # retried later, as any failed attempt
        errors[issued.webhook.id] = delivery.attempts[0].error or ""
    assert errors[literal.webhook.id].startswith(
        "RefusedAddress: refused: 127.0.0.1 is a loopback address"
    )
    assert "localhost resolves to" in errors[named.webhook.id]
    assert "a loopback address" in errors[named.webhook.id]
    assert "WEBHOOK_ALLOW_PRIVATE_URLS" in errors[named.webhook.id]


async def test_the_guard_connects_to_the_address_it_checked() -> None:
    """No public address is reachable from this sandbox, so this test has the transport count
    loopback as allowed: what it checks is that the request goes to the very address that was
    judged, under its own name (`Host`), and that a refused one is never connected to."""
    with receiver(204) as far:
        port = far.url.split(":")[2].split("/")[0]
        loopback_ok = egress.PublicOnlyTransport(allowed=lambda a: a.is_loopback)
        async with httpx.AsyncClient(transport=loopback_ok) as client:
            answer = await client.post(f"http://localhost:{port}/hook", content=b"{}")
        assert answer.status_code == 204
        assert answer.request.url.host in ("127.0.0.1", "::1")
        [got] = far.wait_for(1)
        assert got.headers["host"] == f"localhost:{port}"
        nothing_ok = egress.PublicOnlyTransport(allowed=lambda a: False)
        async with httpx.AsyncClient(transport=nothing_ok) as client:
            with pytest.raises(egress.RefusedAddress, match="localhost resolves to"):
                await client.post(f"http://localhost:{port}/hook", content=b"{}")
        async with httpx.AsyncClient(transport=nothing_ok) as client:
            with pytest.raises(httpx.ConnectError, match="cannot resolve"):
                await client.post("http://no-such-host.invalid/hook", content=b"{}")
        assert len(far.requests) == 1


async def test_an_egress_proxy_decides_instead(
    db: Database, owner: Actor, no_proxy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, a delivery to a private address goes to the proxy (which may refuse
    it), not straight to the address, and not refused by TaskFlow."""
    settings = fast(webhook_allow_private_urls=False, webhook_max_attempts=1)
    with receiver(204) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/hook"))
        await hook(db, owner, "http://10.255.255.1/internal", ["created"])
        await tasks.create_task(db, owner, CreateTask(title="via the proxy", project="web"))
        async with webhooks.client_for(settings) as client:
            assert await webhooks.deliver_due(db, settings, client) == 1
        [got] = proxy.wait_for(1)
    assert got.path == "http://10.255.255.1/internal"  # a proxy's absolute-form request


async def test_rotating_the_secret_is_audited_without_it_and_checks_the_version(
    db: Database, owner: Actor
) -> None:
    issued = await hook(db, owner, "https://example.com/hook")
    rotated = await run(
        db, owner, ops.RotateWebhookSecret(project="web", webhook_id=issued.webhook.id)
    )
    assert rotated.secret != issued.secret and rotated.webhook.version == 2
    until = rotated.webhook.previous_secret_expires_at
    assert until is not None and 86_300 < (until - datetime.now(UTC)).total_seconds() <= 86_400
    [stored] = await sql(
        db, "SELECT secret, previous_secret FROM webhooks WHERE id = :i", i=issued.webhook.id
    )
    assert (stored.secret, stored.previous_secret) == (rotated.secret, issued.secret)
    [entry] = await sql(
        db,
        "SELECT action, details FROM audit_log WHERE entity_type = 'webhook' ORDER BY id DESC "
        "LIMIT 1",
    )
    assert entry.action == "webhook_updated"
    assert entry.details == {"secret_rotated": True, "old_secret_signs_until": until.isoformat()}
    assert issued.secret not in json.dumps(entry.details) and rotated.secret not in str(entry)
    now = await run(
        db,
        owner,
        ops.RotateWebhookSecret(project="web", webhook_id=issued.webhook.id, overlap_seconds=0),
    )
    assert now.webhook.previous_secret_expires_at is None
    [stored] = await sql(
        db, "SELECT previous_secret FROM webhooks WHERE id = :i", i=issued.webhook.id
    )
    assert stored.previous_secret is None
    stale = ops.RotateWebhookSecret(project="web", webhook_id=issued.webhook.id, expected_version=1)
    error = await refused(db, run(db, owner, stale), StaleVersion, "you had version 1")
    assert "it is now 3" in str(error)


async def test_a_failed_delivery_is_sent_again_once_the_hook_is_resumed(
    db: Database, owner: Actor
) -> None:
    settings = fast(webhook_max_attempts=1)
    with receiver(500) as far:
        issued = await hook(db, owner, far.url, ["created"])
        hook_id = issued.webhook.id
        await tasks.create_task(db, owner, CreateTask(title="again", project="web"))
        async with webhooks.client_for(settings) as client:
            assert await webhooks.deliver_due(db, settings, client) == 1  # fails: hook disabled
            [failed] = await run(
                db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=hook_id)
            )
            assert failed.status == "failed"
            again = await run(
                db,
                owner,
                ops.RedeliverWebhookDelivery(
                    project="web", webhook_id=hook_id, delivery_id=failed.id
                ),
            )
            assert (again.id, again.status, len(again.attempts)) == (failed.id, "pending", 1)
            assert await webhooks.deliver_due(db, settings, client) == 0  # the hook is disabled
            await run(db, owner, ops.UpdateWebhook(project="web", webhook_id=hook_id, enabled=True))
            far.status = 204
            assert await webhooks.deliver_due(db, settings, client) == 1
        got = far.wait_for(2)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == failed.id
    [done] = await run(db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=hook_id))
    assert done.status == "delivered"
    assert [(a.attempt, a.status_code) for a in done.attempts] == [(1, 500), (1, 204)]
    [entry] = await sql(
        db, "SELECT actor_handle, details FROM audit_log WHERE action = 'webhook_redelivered'"
    )
    assert entry.actor_handle == "@sarah"
    assert entry.details == {"delivery": failed.id, "event": "task.created", "was": "failed"}


async def test_redelivery_refuses_a_waiting_or_unknown_delivery(db: Database, owner: Actor) -> None:
    issued = await hook(db, owner, "http://127.0.0.1:9/x", ["created"])
    await tasks.create_task(db, owner, CreateTask(title="waiting", project="web"))
    [waiting] = await run(
        db, owner, ops.ListWebhookDeliveries(project="web", webhook_id=issued.webhook.id)
    )
    again = ops.RedeliverWebhookDelivery(
        project="web", webhook_id=issued.webhook.id, delivery_id=waiting.id
    )
    await refused(db, run(db, owner, again), Conflict, "still waiting to be sent")
    unknown = again.model_copy(update={"delivery_id": "msg_999999"})
    error = await refused(db, run(db, owner, unknown), NotFound, "has no delivery msg_999999")
    assert error.next_step is not None and error.next_step.operation == "list_webhook_deliveries"
    with pytest.raises(pydantic.ValidationError, match="msg_"):
        ops.RedeliverWebhookDelivery(project="web", webhook_id=1, delivery_id="42")


def test_during_an_overlap_either_secret_verifies_a_delivery() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"task.created"}'
    headers = signed_headers(new, "msg_7", body, also=old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Verifier(secret).verify(body, headers) == {"type": "task.created"}
    with pytest.raises(Exception, match="No matching signature"):
        Verifier(new_secret()).verify(body, headers)

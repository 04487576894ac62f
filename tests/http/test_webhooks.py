"""Webhooks over REST against a real server (`uvicorn --factory taskflow.server:factory`, its
housekeeping running): real local receivers get deliveries they verify with the
`standardwebhooks` package; a failing one gets retries, then its hook is disabled with an audit
entry; reminders arrive as `@system`. In-process: only admins manage hooks, bad input refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from standardwebhooks import Webhook as Verifier

from taskflow.core import audit
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.http.conftest import (
    ORIGIN,
    Agent,
    assert_audited,
    assert_problem,
    audit_count,
    register_agent,
)
from tests.http.live import live_server
from tests.support.receiver import receiver

FAST = {
    "WEBHOOK_POLL_SECONDS": "0.1",
    "WEBHOOK_MAX_ATTEMPTS": "3",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    "REMINDER_INTERVAL_SECONDS": "0.2",
    "TASKFLOW_HOUSEKEEPING": "true",
    "WEBHOOK_ALLOW_PRIVATE_URLS": "true",  # the receivers here listen on loopback
}


def _env(db_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "ALLOWED_ORIGINS": ORIGIN,
        "AUTH_SERVER_URL": "",
        "TASKFLOW_LOCAL_USER": "",
        **FAST,
    }


async def _until(check, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_live_server_delivers_signed_events_retries_and_disables(
    db: Database, db_url: str, bot: Agent
) -> None:
    with (
        receiver(204) as good,
        receiver(503) as bad,
        live_server(_env(db_url)) as server,
    ):
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=bot.headers, timeout=30
        ) as http:
            made = await http.post(
                "/api/projects/web/webhooks",
                json={"url": good.url, "events": ["created", "due_soon"], "description": "ci"},
            )
            assert made.status_code == 201, made.text
            secret = made.json()["secret"]
            hook = made.json()["webhook"]
            assert (hook["enabled"], hook["events"], hook["project"]) == (
                True,
                ["created", "due_soon"],
                "web",
            )
            failing = await http.post(
                "/api/projects/web/webhooks", json={"url": bad.url, "events": ["created"]}
            )
            assert failing.status_code == 201
            failing_id = failing.json()["webhook"]["id"]
            listed = (await http.get("/api/projects/web/webhooks")).json()
            assert [h["id"] for h in listed] == [hook["id"], failing_id]
            assert secret not in str(listed)

            due = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
            task = await http.post(
                "/api/projects/web/tasks", json={"title": "Ship it", "due_date": due}
            )
            assert task.status_code == 201, task.text
            task_id = task.json()["task"]["id"]

            # the good receiver: task.created (by @bot), then task.due_soon (by @system)
            got = await asyncio.to_thread(good.wait_for, 2, 30)
            payloads = [Verifier(secret).verify(r.body, r.headers) for r in got]
            by_type = {p["type"]: p for p in payloads}
            assert set(by_type) == {"task.created", "task.due_soon"}, payloads
            created = by_type["task.created"]["data"]
            assert (created["task_id"], created["actor"]["handle"], created["via"]) == (
                task_id,
                "@bot",
                "http",
            )
            assert created["request_id"] == task.headers["x-request-id"]
            reminder = by_type["task.due_soon"]["data"]
            assert (reminder["task_id"], reminder["actor"]) == (
                task_id,
                {"handle": "@system", "type": "agent"},
            )

            # the failing receiver: three attempts of one message, then the hook is disabled
            async def disabled():  # type: ignore[no-untyped-def]
                hooks = (await http.get("/api/projects/web/webhooks")).json()
                return next(h for h in hooks if h["id"] == failing_id)["enabled"] is False

            assert await _until(disabled), "the failing hook was never disabled"
            attempts = bad.wait_for(3)
            assert len(attempts) == 3 and len({r.headers["webhook-id"] for r in attempts}) == 1
            log = (await http.get(f"/api/projects/web/webhooks/{failing_id}/deliveries")).json()
            assert [(d["event"], d["status"]) for d in log] == [("task.created", "failed")]

            assert [a["status_code"] for a in log[0]["attempts"]] == [503, 503, 503]
            trail = (
                await http.get("/api/projects/web/audit", params={"action": "webhook_disabled"})
            ).json()
            [entry] = trail["items"]
            assert (entry["entity_id"], entry["actor"], entry["actor_type"]) == (
                failing_id,
                "@system",
                "agent",
            )
            ok_log = (await http.get(f"/api/projects/web/webhooks/{hook['id']}/deliveries")).json()
            assert {(d["event"], d["status"]) for d in ok_log} == {
                ("task.created", "delivered"),
                ("task.due_soon", "delivered"),
            }
            verify = (await http.get("/api/audit/verify")).json()
            assert verify["ok"] is True

            # a rotation: both secrets sign during the overlap; with no overlap, the new alone
            rotate = f"/api/projects/web/webhooks/{hook['id']}/rotate-secret"
            rotated = await http.post(rotate)
            assert rotated.status_code == 200, rotated.text
            second = rotated.json()["secret"]
            assert second != secret and rotated.json()["webhook"]["version"] == 2
            assert rotated.json()["webhook"]["previous_secret_expires_at"] is not None
            made_later = await http.post("/api/projects/web/tasks", json={"title": "Overlap"})
            assert made_later.status_code == 201, made_later.text
            during = (await asyncio.to_thread(good.wait_for, 3, 30))[2]
            assert len(during.headers["webhook-signature"].split(" ")) == 2
            for either in (secret, second):
                assert (
                    Verifier(either).verify(during.body, during.headers)["type"] == "task.created"
                )
            retired = await http.post(rotate, json={"overlap_seconds": 0})
            assert retired.status_code == 200, retired.text
            third = retired.json()["secret"]
            assert retired.json()["webhook"]["previous_secret_expires_at"] is None
            made_last = await http.post("/api/projects/web/tasks", json={"title": "No overlap"})
            assert made_last.status_code == 201, made_last.text
            after = (await asyncio.to_thread(good.wait_for, 4, 30))[3]
            assert Verifier(third).verify(after.body, after.headers)["type"] == "task.created"
            for old in (secret, second):
                with pytest.raises(Exception, match="No matching signature"):
                    Verifier(old).verify(after.body, after.headers)

            # the failed delivery is sent again once asked (here: waits, the hook is disabled)
            failed_id = log[0]["id"]
            path = f"/api/projects/web/webhooks/{failing_id}/deliveries"
            again = await http.post(f"{path}/{failed_id}/redeliver")
            assert again.status_code == 200, again.text
            assert (again.json()["id"], again.json()["status"]) == (failed_id, "pending")
            twice = await http.post(f"{path}/{failed_id}/redeliver")
            assert twice.status_code == 409 and "still waiting" in twice.json()["detail"]
            unknown = await http.post(f"{path}/msg_999999/redeliver")
            assert unknown.status_code == 404, unknown.text
            malformed = await http.post(f"{path}/42/redeliver")
            assert malformed.status_code == 422, malformed.text


async def test_only_admins_manage_hooks_over_rest(
    client: httpx.AsyncClient, as_bot: httpx.AsyncClient, db: Database, owner, bot: Agent
) -> None:
    made = await as_bot.post("/api/projects/web/webhooks", json={"url": "https://e.com/h"})
    assert made.status_code == 201
    await assert_audited(db, made, "webhook_created", "@bot")
    hook_id = made.json()["webhook"]["id"]
    member = await register_agent(db, owner, "@helper", project_role=Role.MEMBER)
    before = await audit_count(db)
    attempts = [
        ("POST", "/api/projects/web/webhooks", {"url": "https://e.com/x"}),
        ("GET", "/api/projects/web/webhooks", None),
        ("PATCH", f"/api/projects/web/webhooks/{hook_id}", {"enabled": False}),
        ("DELETE", f"/api/projects/web/webhooks/{hook_id}", None),
        ("GET", f"/api/projects/web/webhooks/{hook_id}/deliveries", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=member.headers)
        problem = assert_problem(response, 403)
        assert "you are a member of project web" in problem["detail"], problem
    assert await audit_count(db) == before
    gone = await as_bot.get("/api/projects/web/webhooks/999/deliveries")
    assert "has no webhook 999" in assert_problem(gone, 404)["detail"]
    patched = await as_bot.patch(
        f"/api/projects/web/webhooks/{hook_id}", json={"enabled": False, "description": "off"}
    )
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert patched.json()["disabled_reason"] == "paused by @bot"
    deleted = await as_bot.delete(f"/api/projects/web/webhooks/{hook_id}")
    assert deleted.status_code == 204
    await assert_audited(db, deleted, "webhook_deleted", "@bot")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"url": "ftp://e.com/x"}, "url", "must be an absolute http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "url", "must be an absolute http:// or https:// URL"),
        ({"url": "https://e.com/", "events": ["complete"]}, "events", "did you mean 'completed'"),
        ({"url": "https://e.com/", "events": []}, "events", "at least 1 item"),
    ],
)
async def test_bad_input_is_refused_over_rest(
    as_bot: httpx.AsyncClient, db: Database, body: dict, field: str, words: str
) -> None:
    before = await audit_count(db)
    problem = assert_problem(await as_bot.post("/api/projects/web/webhooks", json=body), 422)
    assert words in str(problem), problem
    assert field in str(problem)
    assert await audit_count(db) == before
    assert (await as_bot.get("/api/projects/web/webhooks")).json() == []


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_two_servers_write_each_reminder_once(db: Database, db_url: str, owner) -> None:
    """Two replicas' housekeepers, each looking every 0.1 s: one `due_soon` and one `overdue`."""
    env = {**_env(db_url), "REMINDER_INTERVAL_SECONDS": "0.05", "WEBHOOK_POLL_SECONDS": "0.05"}
    with live_server(env), live_server(env):
        now = datetime.now(UTC)
        soon = await tasks.create_task(
            db, owner, CreateTask(title="soon", project="web", due_date=now + timedelta(hours=1))
        )
        late = await tasks.create_task(
            db, owner, CreateTask(title="late", project="web", due_date=now - timedelta(hours=1))
        )

        async def both() -> bool:
            return len(await _reminder_entries(db)) >= 2

        assert await _until(both)
        await asyncio.sleep(1.5)  # dozens more rounds on each replica
    assert await _reminder_entries(db) == [
        (soon.task.id, "due_soon", "@system"),
        (late.task.id, "overdue", "@system"),
    ]
    assert (await audit.verify(db)).ok


async def _reminder_entries(db: Database) -> list[tuple[int, str, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT entity_id, action, actor_handle FROM audit_log "
                "WHERE action IN ('due_soon', 'overdue') ORDER BY entity_id, id"
            )
        )
        return [tuple(r) for r in rows]

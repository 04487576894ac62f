"""Reading the audit trail over REST: per task, per project (filters, cursor), one entry, verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from taskflow.core import audit
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.schemas import CreateProject
from taskflow.core.services import projects
from tests.http.conftest import assert_problem


async def _busy_task(http: httpx.AsyncClient) -> tuple[int, list[str]]:
    created = await http.post(
        "/api/projects/web/tasks",
        json={"title": "Audited"},
        headers={"X-Request-ID": "req-create-1"},
    )
    task_id = created.json()["task"]["id"]
    ids = [created.headers["x-request-id"]]  # the server's id; the client's is kept beside it
    for verb in ("start", "review"):
        response = await http.post(f"/api/tasks/{task_id}/{verb}")
        ids.append(response.headers["x-request-id"])
    return task_id, ids


async def test_task_audit_newest_first_with_request_ids(as_bot: httpx.AsyncClient) -> None:
    task_id, request_ids = await _busy_task(as_bot)
    response = await as_bot.get(f"/api/tasks/{task_id}/audit")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [e["action"] for e in items] == ["review_requested", "started", "created"]
    assert [e["request_id"] for e in items] == request_ids[::-1]
    assert {(e["actor"], e["actor_type"], e["via"]) for e in items} == {("@bot", "agent", "http")}
    only = await as_bot.get(f"/api/tasks/{task_id}/audit?action=started")
    assert [e["action"] for e in only.json()["items"]] == ["started"]
    assert_problem(await as_bot.get("/api/tasks/424242/audit"), 404)
    assert_problem(await as_bot.get(f"/api/tasks/{task_id}/audit?task_id=1"), 400)


async def test_project_audit_filters_and_cursor(as_bot: httpx.AsyncClient) -> None:
    await _busy_task(as_bot)
    await _busy_task(as_bot)
    url = "/api/projects/web/audit"
    everything = (await as_bot.get(url)).json()["items"]
    # the project's own two (created, @bot added) and three per task
    assert len(everything) == 8
    pages: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await as_bot.get(url, params=params)).json()
        pages += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in pages] == [e["id"] for e in everything]
    by_actor = (await as_bot.get(url, params={"actor": "@sarah"})).json()["items"]
    assert [e["action"] for e in by_actor] == ["member_added", "created"]
    by_action = (await as_bot.get(url, params={"action": "created"})).json()["items"]
    assert len(by_action) == 3  # the project and both tasks
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await as_bot.get(url, params={"since": future})).json()["items"] == []
    assert len((await as_bot.get(url, params={"until": future})).json()["items"]) == 8
    assert_problem(await as_bot.get(url, params={"since": "last week"}), 422)
    assert_problem(await as_bot.get(url, params={"cursor": "abc"}), 422)
    assert_problem(await as_bot.get(url, params={"actor": "sarah"}), 422)


async def test_project_audit_of_a_stranger_project_is_not_found(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    await projects.create_project(db, owner, CreateProject(slug="secret", name="Secret"))
    assert_problem(await as_bot.get("/api/projects/secret/audit"), 404)


async def test_one_entry_and_all_entries(as_bot: httpx.AsyncClient) -> None:
    task_id, _ = await _busy_task(as_bot)
    latest = (await as_bot.get("/api/audit", params={"limit": 1})).json()["items"][0]
    assert (latest["task_id"], latest["action"]) == (task_id, "review_requested")
    one = await as_bot.get(f"/api/audit/{latest['id']}")
    assert one.status_code == 200 and one.json() == latest
    assert_problem(await as_bot.get("/api/audit/99999999"), 404)
    assert_problem(await as_bot.get("/api/audit/-3"), 422)


async def test_verify_reports_ok_then_names_a_tampered_entry(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    await _busy_task(as_bot)
    ok = await as_bot.get("/api/audit/verify")
    assert ok.status_code == 200
    assert ok.json()["ok"] is True and ok.json()["entries_checked"] > 0
    assert ok.json()["digest"].startswith("tfd1:")
    async with db.engine.begin() as conn:  # tamper as a superuser would: bypass the trigger
        await conn.execute(text("SET session_replication_role = replica"))
        await conn.execute(text("UPDATE audit_log SET actor_handle = '@mallory' WHERE id = 3"))
    broken = (await as_bot.get("/api/audit/verify")).json()
    assert broken["ok"] is False
    assert broken["problems"][0]["entry_id"] == 3


async def test_verify_digest_describes_the_log_it_verified(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    """Verification and its digest read one snapshot: the digest's last id is the newest entry
    verified, and the saved digest still checks after more entries were written."""
    await _busy_task(as_bot)
    answer = (await as_bot.get("/api/audit/verify")).json()
    async with db.engine.connect() as conn:
        count, newest = (await conn.execute(text("SELECT count(*), max(id) FROM audit_log"))).one()
    assert answer["entries_checked"] == count
    assert answer["digest"].split(":")[1] == str(newest)
    await _busy_task(as_bot)
    assert await audit.check_digest(db, answer["digest"])
    bare = (await as_bot.get("/api/audit/verify", params={"with_digest": "false"})).json()
    assert bare["ok"] is True and bare["digest"] is None


async def test_audit_reads_refuse_unknown_arguments_naming_the_nearest(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    task_id, _ = await _busy_task(as_bot)
    trail = assert_problem(await as_bot.get("/api/audit", params={"acton": "started"}), 422)
    assert trail["errors"][0]["field"] == "acton"
    assert trail["errors"][0]["message"] == "unknown argument 'acton': did you mean 'action'?"
    per_task = assert_problem(await as_bot.get(f"/api/tasks/{task_id}/audit?limt=2"), 422)
    assert "did you mean 'limit'?" in per_task["errors"][0]["message"]
    verify = assert_problem(await as_bot.get("/api/audit/verify?with_digests=false"), 422)
    assert "did you mean 'with_digest'?" in verify["errors"][0]["message"]
    entry = assert_problem(await as_bot.get("/api/audit/1?verbose=1"), 422)
    assert entry["errors"][0]["field"] == "verbose"

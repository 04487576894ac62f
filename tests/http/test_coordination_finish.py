"""Issue 13's second half over REST: named reviewers, parents finish last, recurrence."""

from __future__ import annotations

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from tests.http.conftest import Agent, assert_audited, assert_problem, audit_count, register_agent


async def _task(http: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> int:
    response = await http.post(
        "/api/projects/web/tasks", json={"title": "Work", **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["task"]["id"])


async def _team(db: Database, owner: Actor) -> tuple[Agent, Agent, Agent]:
    worker = await register_agent(db, owner, "@worker", project_role=Role.MEMBER)
    reviewer = await register_agent(db, owner, "@rev", project_role=Role.MEMBER)
    other = await register_agent(db, owner, "@other", project_role=Role.MEMBER)
    return worker, reviewer, other


async def test_a_named_review_is_decided_by_its_reviewer_or_an_admin(
    client: httpx.AsyncClient, as_bot: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    worker, rev, other = await _team(db, owner)
    task_id = await _task(client, worker.headers)
    base = f"/api/tasks/{task_id}"
    await client.post(f"{base}/start", headers=worker.headers)
    asked = await client.post(f"{base}/review", json={"reviewer": "@rev"}, headers=worker.headers)
    assert asked.status_code == 200, asked.text
    await assert_audited(db, asked, "review_requested", "@worker", reviewer="@rev")
    assert (await client.get(base, headers=worker.headers)).json()["task"]["reviewer"] == "@rev"
    # The reviewer sees it in "my work".
    mine = await client.get("/api/tasks", params={"mine": "true"}, headers=rev.headers)
    assert [t["id"] for t in mine.json()["items"]] == [task_id]
    before = await audit_count(db)
    assert_problem(await client.post(f"{base}/approve", headers=worker.headers), 403)
    refused = await client.post(f"{base}/approve", headers=other.headers)
    assert "waiting for @rev's review" in assert_problem(refused, 403, "forbidden")["detail"]
    assert await audit_count(db) == before
    approved = await client.post(f"{base}/approve", headers=rev.headers)
    assert approved.json()["status"] == "completed"
    await assert_audited(db, approved, "approved", "@rev")
    # Another task: a project admin (@bot) may decide a review named for someone else.
    second = await _task(client, worker.headers)
    await client.post(f"/api/tasks/{second}/start", headers=worker.headers)
    await client.post(
        f"/api/tasks/{second}/review", json={"reviewer": "@rev"}, headers=worker.headers
    )
    rejected = await as_bot.post(f"/api/tasks/{second}/reject", json={"reason": "tests"})
    assert rejected.json()["status"] == "in_progress"


async def test_a_reviewer_must_be_another_member(
    client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    worker, _, _ = await _team(db, owner)
    task_id = await _task(client, worker.headers)
    await client.post(f"/api/tasks/{task_id}/start", headers=worker.headers)
    for handle in ("@worker", "@nobody", "not-a-handle"):
        response = await client.post(
            f"/api/tasks/{task_id}/review", json={"reviewer": handle}, headers=worker.headers
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "reviewer"


async def test_parents_finish_last_unless_the_project_allows(
    as_bot: httpx.AsyncClient, as_sarah: httpx.AsyncClient, db: Database
) -> None:
    parent = await _task(as_bot, {})
    kids = await as_bot.post(
        f"/api/tasks/{parent}/subtasks", json=[{"title": "one"}, {"title": "two"}]
    )
    one, two = (k["id"] for k in kids.json())
    for task_id in (one, two, parent):
        await as_bot.post(f"/api/tasks/{task_id}/start")
    before = await audit_count(db)
    problem = assert_problem(await as_bot.post(f"/api/tasks/{parent}/complete"), 409)
    assert f"#{one} 'one' (in_progress), #{two} 'two' (in_progress)" in problem["detail"]
    assert problem["open_subtasks"] == [one, two]
    assert await audit_count(db) == before
    # @bot is an admin: the policy is the owner's.
    assert_problem(await as_bot.put("/api/projects/web", json={"allow_open_subtasks": True}), 403)
    allowed = await as_sarah.put("/api/projects/web", json={"allow_open_subtasks": True})
    assert allowed.json()["allow_open_subtasks"] is True
    done = await as_bot.post(f"/api/tasks/{parent}/complete")
    assert done.json()["status"] == "completed"
    detail = (await as_bot.get(f"/api/tasks/{parent}")).json()["task"]
    assert detail["rolled_up_progress"] == 0  # its subtasks are still open


async def test_weekly_task_recurs_on_each_completion(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    first = await _task(as_bot, {}, recurrence="Weekly", due_date="2026-12-07")
    got = (await as_bot.get(f"/api/tasks/{first}")).json()["task"]
    assert got["recurrence"] == "weekly" and got["recurrence_legacy"] is False
    current, dues = first, []
    for _ in range(3):
        await as_bot.post(f"/api/tasks/{current}/start")
        done = await as_bot.post(f"/api/tasks/{current}/complete")
        entry = await assert_audited(db, done, "recurred", "@bot", from_task_id=current)
        current = entry.entity_id
        dues.append((await as_bot.get(f"/api/tasks/{current}")).json()["task"]["due_date"][:10])
    assert dues == ["2026-12-14", "2026-12-21", "2026-12-28"]


async def test_a_bad_recurrence_is_a_422_with_the_accepted_forms(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    before = await audit_count(db)
    response = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "x", "recurrence": "fortnightly"}
    )
    error = assert_problem(response, 422)["errors"][0]
    assert error["field"] == "recurrence"
    assert "daily, weekly, monthly, every N days, every N weeks" in error["message"]
    task_id = await _task(as_bot, {})
    edit = await as_bot.put(f"/api/tasks/{task_id}", json={"recurrence": "every blue moon"})
    assert "RRULE" in assert_problem(edit, 422)["errors"][0]["message"]
    assert await audit_count(db) == before + 1  # only the good create

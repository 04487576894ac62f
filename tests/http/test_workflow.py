"""The workflow verbs over REST: each one's audit entry, the status -> verb mapping, and the
refusals (transition table, review rules, If-Match)."""

from __future__ import annotations

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from tests.http.conftest import Agent, assert_audited, assert_problem, audit_count, register_agent


async def _task(http: httpx.AsyncClient, **fields: object) -> int:
    response = await http.post("/api/projects/web/tasks", json={"title": "Work", **fields})
    assert response.status_code == 201, response.text
    return int(response.json()["task"]["id"])


async def test_status_patch_runs_the_matching_verb(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    url = f"/api/tasks/{task_id}/status"
    steps = [
        ("in_progress", "started"),
        ("blocked", "blocked"),
        ("in_progress", "started"),
        ("review", "review_requested"),
        ("in_progress", "started"),  # the requester withdraws the request
        ("completed", "completed"),
    ]
    for version, (status, action) in enumerate(steps, start=1):
        response = await as_bot.patch(
            url, json={"status": status}, headers={"If-Match": f'"{version}"'}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
        assert response.headers["etag"] == f'"{version + 1}"'
        await assert_audited(db, response, action, "@bot")
    assert (await as_bot.get(f"/api/tasks/{task_id}")).json()["task"]["assignee"] == "@bot"


async def test_status_patch_pending_unblocks(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    await as_bot.patch(f"/api/tasks/{task_id}/status", json={"status": "blocked"})
    response = await as_bot.patch(f"/api/tasks/{task_id}/status", json={"status": "pending"})
    assert response.json()["status"] == "pending"
    await assert_audited(db, response, "unblocked", "@bot")


async def test_status_patch_refusals(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    url = f"/api/tasks/{task_id}/status"
    before = await audit_count(db)
    illegal = await as_bot.patch(url, json={"status": "completed"})
    problem = assert_problem(illegal, 409, "invalid-transition")
    assert "can move to: in_progress, blocked" in problem["detail"]
    assert problem["allowed"] == ["start", "block"]
    assert problem["next_step"]["path"] == f"/api/tasks/{task_id}/start"
    assert_problem(await as_bot.patch(url, json={"status": "done"}), 422)
    assert_problem(
        await as_bot.patch(url, json={"status": "in_progress"}, headers={"If-Match": '"2"'}), 412
    )
    assert_problem(
        await as_bot.patch(url, content=b"status=x", headers={"Content-Type": "text/plain"}), 415
    )
    assert await audit_count(db) == before


async def test_progress_with_note(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    url = f"/api/tasks/{task_id}/progress"
    assert_problem(await as_bot.patch(url, json={"progress_percent": 10}), 409)  # not started
    await as_bot.post(f"/api/tasks/{task_id}/start")
    response = await as_bot.patch(url, json={"progress_percent": 40, "note": "schema done"})
    assert response.status_code == 200 and response.json()["progress_percent"] == 40
    await assert_audited(
        db, response, "progressed", "@bot", progress_percent=40, note="schema done"
    )
    bad = await as_bot.patch(url, json={"progress_percent": 101})
    assert assert_problem(bad, 422)["errors"][0]["field"] == "progress_percent"
    assert_problem(await as_bot.patch(url, json={"note": "no number"}), 422)


async def test_assign_and_unassign(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    url = f"/api/tasks/{task_id}/assign"
    response = await as_bot.patch(url, json={"assignee": "@sarah"})
    assert response.json()["assignee"] == "@sarah"
    await assert_audited(db, response, "assigned", "@bot", assignee="@sarah")
    cleared = await as_bot.patch(url, json={"assignee": None})
    assert cleared.json()["assignee"] is None
    assert_problem(await as_bot.patch(url, json={"assignee": "@ghost"}), 422)
    assert_problem(await as_bot.patch(url, json={}), 422)  # say null to unassign


async def test_due_date_set_and_clear(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    url = f"/api/tasks/{task_id}/due"
    response = await as_bot.patch(url, json={"due_date": "2031-02-03T10:00:00+02:00"})
    assert response.json()["due_date"] == "2031-02-03T08:00:00Z"
    await assert_audited(db, response, "due_date_set", "@bot")
    cleared = await as_bot.patch(url, json={"due_date": None})
    assert cleared.json()["due_date"] is None
    await assert_audited(db, cleared, "due_date_cleared", "@bot")
    assert_problem(await as_bot.patch(url, json={"due_date": "next tuesday"}), 422)


async def test_review_approve_reject_rules(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    reviewer = await register_agent(db, owner, "@reviewer", project_role=Role.MEMBER)
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    await as_bot.post(f"{base}/start")
    review = await as_bot.post(f"{base}/review")
    assert review.json()["status"] == "review"
    await assert_audited(db, review, "review_requested", "@bot")

    assert_problem(await as_bot.post(f"{base}/approve", json={}), 403)  # own work
    no_reason = await client.post(f"{base}/reject", json={"reason": ""}, headers=reviewer.headers)
    assert_problem(no_reason, 422)
    rejected = await client.post(
        f"{base}/reject", json={"reason": "missing tests"}, headers=reviewer.headers
    )
    assert rejected.json()["status"] == "in_progress"
    await assert_audited(db, rejected, "rejected", "@reviewer", reason="missing tests")

    await as_bot.post(f"{base}/review")
    approved = await client.post(f"{base}/approve", json={"note": "lgtm"}, headers=reviewer.headers)
    assert approved.json()["status"] == "completed"
    assert approved.json()["progress_percent"] == 100
    await assert_audited(db, approved, "approved", "@reviewer", note="lgtm")
    assert_problem(await client.post(f"{base}/approve", headers=reviewer.headers), 409)


async def test_complete_block_unblock(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    assert_problem(await as_bot.post(f"{base}/complete"), 409)  # pending cannot complete
    assert_problem(await as_bot.post(f"{base}/unblock"), 409)  # not blocked
    blocked = await as_bot.post(f"{base}/block", json={"reason": "waiting on API"})
    assert blocked.json()["status"] == "blocked"
    await assert_audited(db, blocked, "blocked", "@bot", reason="waiting on API")
    unblocked = await as_bot.post(f"{base}/unblock")
    assert unblocked.json()["status"] == "pending"
    await assert_audited(db, unblocked, "unblocked", "@bot")
    started = await as_bot.post(f"{base}/start", headers={"If-Match": '"3"'})
    await assert_audited(db, started, "started", "@bot")
    assert_problem(await as_bot.post(f"{base}/complete", headers={"If-Match": '"3"'}), 412)
    done = await as_bot.post(f"{base}/complete", headers={"If-Match": '"4"'})
    assert (done.json()["status"], done.json()["progress_percent"]) == ("completed", 100)
    await assert_audited(db, done, "completed", "@bot")


async def test_review_required_policy_blocks_plain_complete(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    from taskflow.core.schemas import UpdateProject
    from taskflow.core.services import projects

    await projects.update_project(
        db, owner, "web", UpdateProject(approval_policy="review_required")
    )
    task_id = await _task(as_bot)
    await as_bot.post(f"/api/tasks/{task_id}/start")
    problem = assert_problem(await as_bot.post(f"/api/tasks/{task_id}/complete"), 409)
    assert "requires review" in problem["detail"]


async def test_delegate(as_bot: httpx.AsyncClient, db: Database, bot: Agent) -> None:
    task_id = await _task(as_bot, assignee="@bot")
    response = await as_bot.post(f"/api/tasks/{task_id}/delegate", json={"to": "@sarah"})
    assert response.json()["assignee"] == "@sarah"
    await assert_audited(db, response, "delegated", "@bot", to="@sarah")
    assert_problem(await as_bot.post(f"/api/tasks/{task_id}/delegate", json={"to": "@nobody"}), 422)
    assert_problem(await as_bot.post(f"/api/tasks/{task_id}/delegate", json={}), 422)


async def test_claim_takes_the_most_urgent_open_task_once(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    other = await register_agent(db, owner, "@other", project_role=Role.MEMBER)
    await _task(as_bot, priority="low")
    urgent = await _task(as_bot, priority="critical")
    claimed = await as_bot.post("/api/projects/web/claim", json={})
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["id"], claimed.json()["status"], claimed.json()["assignee"]) == (
        urgent,
        "in_progress",
        "@bot",
    )
    await assert_audited(db, claimed, "claimed", "@bot")
    second = await client.post("/api/projects/web/claim", headers=other.headers)
    assert second.json()["assignee"] == "@other" and second.json()["id"] != urgent
    assert_problem(await as_bot.post("/api/projects/web/claim"), 404)
    assert_problem(await as_bot.post("/api/projects/web/claim", json={"tags": "x"}), 422)


async def test_work_times_and_seed_ids_through_a_review_cycle(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor, bot: Agent
) -> None:
    from taskflow.core.schemas import UpdateProject
    from taskflow.core.services import projects

    await projects.update_project(
        db, owner, "web", UpdateProject(approval_policy="review_required")
    )
    reviewer = await register_agent(db, owner, "@reviewer", project_role=Role.MEMBER)
    web_id = (await as_bot.get("/api/projects/web")).json()["id"]
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    started = (await as_bot.post(f"{base}/start")).json()
    first = started["started_at"]
    assert first is not None and started["completed_at"] is None
    assert (await as_bot.post(f"{base}/review")).json()["started_at"] == first
    rejected = await client.post(f"{base}/reject", json={"reason": "no"}, headers=reviewer.headers)
    assert (rejected.json()["status"], rejected.json()["started_at"]) == ("in_progress", first)
    await as_bot.post(f"{base}/review")
    approved = (await client.post(f"{base}/approve", headers=reviewer.headers)).json()
    assert approved["started_at"] == first and approved["completed_at"] is not None
    reopened = await as_bot.patch(f"{base}/status", json={"status": "review"})
    assert reopened.status_code == 200, reopened.text
    await assert_audited(db, reopened, "review_requested", "@bot")
    task = (await as_bot.get(base)).json()["task"]
    assert (task["status"], task["started_at"], task["completed_at"]) == ("review", first, None)
    assert (task["project_id"], task["assignee_id"], task["created_by_id"]) == (
        web_id,
        bot.actor.worker_id,
        bot.actor.worker_id,
    )
    assert (task["project"], task["assignee"], task["created_by"]) == ("web", "@bot", "@bot")
    listed = (await as_bot.get("/api/tasks", params={"project": "web"})).json()["items"]
    assert [(t["id"], t["started_at"], t["completed_at"]) for t in listed] == [
        (task_id, first, None)
    ]


async def test_task_detail_lists_direct_children(as_bot: httpx.AsyncClient) -> None:
    created = await as_bot.post(
        "/api/projects/web/tasks",
        json={"title": "Root", "subtasks": [{"title": "a"}, {"title": "b"}]},
    )
    body = created.json()
    kids = [n["id"] for n in body["subtree"]]
    assert body["subtasks"] == kids
    grandchild = await as_bot.post(f"/api/tasks/{kids[0]}/subtasks", json=[{"title": "deep"}])
    assert grandchild.status_code == 201, grandchild.text
    detail = (await as_bot.get(f"/api/tasks/{body['task']['id']}")).json()
    assert detail["subtasks"] == kids and len(detail["subtree"]) == 3
    assert {n["parent_task_id"] for n in detail["subtree"]} == {body["task"]["id"], kids[0]}
    assert all(n["parent_task_id"] == n["parent_id"] for n in detail["subtree"])


# ---------------------------------------------------------------- rules live on transitions


async def _strict_reviewer(db: Database, owner: Actor) -> Agent:
    """`web` requires review; @rev is a plain member of it who can review."""
    from taskflow.core.schemas import UpdateProject
    from taskflow.core.services import projects

    await projects.update_project(
        db, owner, "web", UpdateProject(approval_policy="review_required")
    )
    return await register_agent(db, owner, "@rev", project_role=Role.MEMBER, projects_=("web",))


async def test_unknown_fields_are_refused_with_the_nearest_name(as_bot: httpx.AsyncClient) -> None:
    task_id = await _task(as_bot)
    problem = assert_problem(
        await as_bot.post(f"/api/tasks/{task_id}/reject", json={"reson": "x"}), 422
    )
    assert "did you mean 'reason'?" in problem["detail"]
    assert {e["field"] for e in problem["errors"]} == {"reson", "reason"}


async def test_a_no_op_and_a_repeat_write_nothing(as_bot: httpx.AsyncClient, db: Database) -> None:
    task_id = await _task(as_bot)
    started = await as_bot.post(f"/api/tasks/{task_id}/start")
    before = await audit_count(db)
    again = await as_bot.post(f"/api/tasks/{task_id}/start")  # idempotent repeat
    assert again.status_code == 200 and again.headers["etag"] == started.headers["etag"]
    same = await as_bot.patch(f"/api/tasks/{task_id}/assign", json={"assignee": "@bot"})
    assert same.status_code == 200 and same.json()["version"] == started.json()["version"]
    assert await audit_count(db) == before


async def test_review_is_left_by_a_verdict_or_the_requesters_withdrawal(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    reviewer = await _strict_reviewer(db, owner)
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    await as_bot.post(f"{base}/start")
    await as_bot.post(f"{base}/review")
    problem = assert_problem(await client.post(f"{base}/start", headers=reviewer.headers), 409)
    assert problem["next_step"] == {
        "operation": "reject",
        "arguments": {"task_id": task_id},
        "method": "POST",
        "path": f"{base}/reject",
    }
    edit = await client.put(base, json={"status": "in_progress"}, headers=reviewer.headers)
    assert_problem(edit, 409)
    withdrawn = await as_bot.post(f"{base}/start")  # the requester withdraws
    assert withdrawn.json()["status"] == "in_progress"
    await assert_audited(db, withdrawn, "started", "@bot")


async def test_self_approval_through_an_edit_is_refused(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    await _strict_reviewer(db, owner)
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    await as_bot.post(f"{base}/start")
    edited = await as_bot.put(base, json={"status": "review", "assignee": None})
    assert edited.json()["status"] == "review" and edited.json()["assignee"] is None
    await assert_audited(db, edited, "review_requested", "@bot")  # the edit asked for review
    problem = assert_problem(await as_bot.post(f"{base}/approve"), 403)
    assert "your own work" in problem["detail"]


async def test_reopen_sends_a_completed_task_back_to_review(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    task_id = await _task(as_bot)
    base = f"/api/tasks/{task_id}"
    assert_problem(await as_bot.post(f"{base}/reopen"), 409)  # pending: nothing to reopen
    await as_bot.post(f"{base}/start")
    await as_bot.post(f"{base}/complete")
    reopened = await as_bot.post(f"{base}/reopen")
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "review" and reopened.json()["completed_at"] is None
    await assert_audited(db, reopened, "review_requested", "@bot", reopened=True)

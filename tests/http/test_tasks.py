"""Tasks over REST: create (with subtasks), read the subtree, list with filters and cursors,
edit with If-Match, delete a subtree, add subtasks all or nothing."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import CreateProject, CreateTask
from taskflow.core.services import projects, tasks
from tests.http.conftest import (
    assert_audited,
    assert_problem,
    audit_count,
    audit_for,
    register_agent,
)


async def _task(http: httpx.AsyncClient, title: str = "Build it", **fields: object) -> dict:
    response = await http.post("/api/projects/web/tasks", json={"title": title, **fields})
    assert response.status_code == 201, response.text
    return response.json()["task"]


async def test_create_task_with_subtasks_is_audited(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    response = await as_bot.post(
        "/api/projects/web/tasks",
        json={
            "title": "Launch",
            "description": "v2",
            "priority": "high",
            "tags": ["release"],
            "due_date": "2030-01-31",
            "assignee": "@sarah",
            "subtasks": [{"title": "Docs"}, {"title": "Blog post", "priority": "low"}],
        },
    )
    assert response.status_code == 201, response.text
    detail = response.json()
    task = detail["task"]
    assert (task["title"], task["project"], task["priority"], task["assignee"]) == (
        "Launch",
        "web",
        "high",
        "@sarah",
    )
    assert task["due_date"] == "2030-01-31T00:00:00Z"
    assert (task["version"], task["progress_percent"]) == (1, 0)
    assert [s["title"] for s in detail["subtree"]] == ["Docs", "Blog post"]
    assert response.headers["etag"] == '"1"'
    entry = await assert_audited(db, response, "created", "@bot")
    assert entry.task_id == task["id"]
    await assert_audited(db, response, "subtask_added", "@bot")


async def test_create_task_refusals_create_nothing(
    as_bot: httpx.AsyncClient, client: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    viewer = await register_agent(db, owner, "@viewer", project_role=Role.VIEWER)
    before = await audit_count(db)
    empty = await as_bot.post("/api/projects/web/tasks", json={"title": "  "})
    assert assert_problem(empty, 422)["errors"][0]["field"] == "title"
    bad_sub = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "ok", "subtasks": [{"title": "ok"}, {}]}
    )
    assert assert_problem(bad_sub, 422)["errors"][0]["field"] == "subtasks.1.title"
    mismatch = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "x", "project": "default"}
    )
    assert "comes from the path" in assert_problem(mismatch, 400)["detail"]
    stranger = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "x", "assignee": "@nope"}
    )
    assert_problem(stranger, 422)
    assert_problem(await as_bot.post("/api/projects/nope/tasks", json={"title": "x"}), 404)
    as_viewer = await client.post(
        "/api/projects/web/tasks", json={"title": "x"}, headers=viewer.headers
    )
    assert_problem(as_viewer, 403)
    listed = await as_bot.get("/api/projects/web/tasks")
    assert listed.json()["items"] == []
    assert await audit_count(db) == before


async def test_get_task_returns_subtree_with_rollup(as_bot: httpx.AsyncClient) -> None:
    root = await _task(as_bot, "Root", subtasks=[{"title": "A"}, {"title": "B"}])
    child_a = (await as_bot.get(f"/api/tasks/{root['id']}")).json()["subtree"][0]
    added = await as_bot.post(f"/api/tasks/{child_a['id']}/subtasks", json={"title": "A.1"})
    a1 = added.json()[0]["id"]
    for task_id in (a1, child_a["id"]):  # parents finish last
        await as_bot.post(f"/api/tasks/{task_id}/start")
        assert (await as_bot.post(f"/api/tasks/{task_id}/complete")).status_code == 200
    response = await as_bot.get(f"/api/tasks/{root['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    detail = response.json()
    assert [(n["title"], n["depth"]) for n in detail["subtree"]] == [
        ("A", 1),
        ("A.1", 2),
        ("B", 1),
    ]
    assert detail["task"]["rolled_up_progress"] == 50  # A counts 100, B counts 0
    assert_problem(await as_bot.get("/api/tasks/999999"), 404)
    assert_problem(await as_bot.get("/api/tasks/0"), 422)
    assert_problem(await as_bot.get("/api/tasks/abc"), 422)


async def _tree(http: httpx.AsyncClient) -> tuple[int, list[tuple[int, int]]]:
    """Root > A > (A.1 > A.1.a), B, C: the root's id and (id, depth) depth-first."""
    root = await _task(http, "Root", subtasks=[{"title": t} for t in ("A", "B", "C")])
    a, b, c = (await http.get(f"/api/tasks/{root['id']}")).json()["subtree"]
    a1 = (await http.post(f"/api/tasks/{a['id']}/subtasks", json={"title": "A.1"})).json()[0]
    a1a = (await http.post(f"/api/tasks/{a1['id']}/subtasks", json={"title": "A.1.a"})).json()[0]
    order = [(a["id"], 1), (a1["id"], 2), (a1a["id"], 3), (b["id"], 1), (c["id"], 1)]
    return root["id"], order


async def _pages(http: httpx.AsyncClient, url: str, **params: object) -> list[dict]:
    pages = [(await http.get(url, params=params)).json()]
    while pages[-1]["next_cursor"]:
        response = await http.get(url, params={**params, "cursor": pages[-1]["next_cursor"]})
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


async def test_get_task_pages_the_subtree_depth_first(as_bot: httpx.AsyncClient) -> None:
    root, order = await _tree(as_bot)
    for limit in (1, 2, 4, 5, 1000):
        pages = await _pages(as_bot, f"/api/tasks/{root}", limit=limit)
        assert [(n["id"], n["depth"]) for p in pages for n in p["subtree"]] == order
        assert len(pages) == -(-len(order) // limit)
        assert all(len(p["subtree"]) <= limit for p in pages)
        assert {p["task"]["id"] for p in pages} == {root}
        assert all(p["subtasks"] == [order[0][0], order[3][0], order[4][0]] for p in pages)
    shallow = await _pages(as_bot, f"/api/tasks/{root}", depth=1, limit=2)
    assert [(n["id"], n["depth"]) for p in shallow for n in p["subtree"]] == [
        (i, d) for i, d in order if d == 1
    ]
    none = (await as_bot.get(f"/api/tasks/{root}?depth=0")).json()
    assert none["subtree"] == [] and none["next_cursor"] is None and len(none["subtasks"]) == 3


async def test_refused_subtree_pages_are_problems_and_change_nothing(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    root, order = await _tree(as_bot)
    other = (await _task(as_bot, "Other", subtasks=[{"title": "x"}]))["id"]
    cursor = (await as_bot.get(f"/api/tasks/{root}?limit=2")).json()["next_cursor"]
    before = await audit_count(db)
    for query, field in (
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("depth=-1", "depth"),
        ("cursor=nonsense", "cursor"),
    ):
        body = assert_problem(await as_bot.get(f"/api/tasks/{root}?{query}"), 422)
        assert field in body["detail"], body
    foreign = assert_problem(await as_bot.get(f"/api/tasks/{other}?cursor={cursor}"), 422)
    assert f"pages the subtree of task {root}, not of task {other}" in foreign["detail"]
    moved = order[1][0]  # A.1, where that page ended
    response = await as_bot.put(f"/api/tasks/{moved}", json={"parent_id": other})
    assert response.status_code == 200, response.text
    gone = assert_problem(await as_bot.get(f"/api/tasks/{root}?cursor={cursor}"), 409)
    assert "read again without a cursor" in gone["detail"]
    assert await audit_count(db) == before + 1  # the move; the reads wrote nothing


async def test_task_in_a_project_i_am_not_in_is_not_found(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    await projects.create_project(db, owner, CreateProject(slug="secret", name="Secret"))
    detail = await tasks.create_task(db, owner, CreateTask(title="Hidden", project="secret"))
    task_id = detail.task.id
    for response in (
        await as_bot.get(f"/api/tasks/{task_id}"),
        await as_bot.put(f"/api/tasks/{task_id}", json={"title": "Mine"}),
        await as_bot.delete(f"/api/tasks/{task_id}"),
        await as_bot.post(f"/api/tasks/{task_id}/start"),
        await as_bot.get("/api/projects/secret/tasks"),
    ):
        assert_problem(response, 404)


async def test_list_filters_and_sorts(as_bot: httpx.AsyncClient) -> None:
    await _task(as_bot, "Write docs", priority="low", tags=["docs"])
    await _task(
        as_bot,
        "Fix login bug",
        priority="critical",
        tags=["bug", "auth"],
        assignee="@sarah",
        due_date="2030-01-01",
    )
    await _task(as_bot, "Fix layout bug", priority="high", tags=["bug"], due_date="2029-06-01")

    async def titles(query: str) -> list[str]:
        response = await as_bot.get(f"/api/projects/web/tasks?{query}")
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()["items"]]

    assert await titles("") == ["Write docs", "Fix login bug", "Fix layout bug"]
    assert await titles("sort=priority") == ["Fix login bug", "Fix layout bug", "Write docs"]
    assert await titles("sort=due_date") == ["Fix layout bug", "Fix login bug", "Write docs"]
    assert await titles("sort=created&reverse=true") == [
        "Fix layout bug",
        "Fix login bug",
        "Write docs",
    ]
    assert await titles("tags=bug&tags=auth") == ["Fix login bug"]
    assert await titles("assignee=@sarah") == ["Fix login bug"]
    assert await titles("no_assignee=true") == ["Write docs", "Fix layout bug"]
    assert await titles("search=BUG&priority=high") == ["Fix layout bug"]
    assert await titles("due_before=2029-12-31") == ["Fix layout bug"]
    assert await titles("status=in_progress") == []
    everywhere = await as_bot.get("/api/tasks?project=web&limit=2")
    assert len(everywhere.json()["items"]) == 2


async def test_list_has_due_date_and_title_sort(as_bot: httpx.AsyncClient) -> None:
    for title, due in (
        ("delta", None),
        ("Bravo", "2030-01-01"),
        ("alpha", None),
        ("Charlie", "2029-01-01"),
    ):
        await _task(as_bot, title, due_date=due)

    async def page(path: str, query: str) -> dict:
        response = await as_bot.get(f"{path}?{query}")
        assert response.status_code == 200, response.text
        return response.json()

    for path in ("/api/projects/web/tasks", "/api/tasks"):
        with_due = await page(path, "has_due_date=true&sort=title")
        assert [t["title"] for t in with_due["items"]] == ["Bravo", "Charlie"]
        without = await page(path, "has_due_date=false&sort=title&reverse=true")
        assert [t["title"] for t in without["items"]] == ["delta", "alpha"]
        first = await page(path, "sort=title&limit=3")
        assert [t["title"] for t in first["items"]] == ["alpha", "Bravo", "Charlie"]
        rest = await page(path, f"sort=title&limit=3&cursor={first['next_cursor']}")
        assert [t["title"] for t in rest["items"]] == ["delta"] and rest["next_cursor"] is None
        back = await page(path, "sort=title&reverse=true&limit=2")
        more = await page(path, f"sort=title&reverse=true&limit=2&cursor={back['next_cursor']}")
        titles = [t["title"] for t in back["items"] + more["items"]]
        assert titles == ["delta", "Charlie", "Bravo", "alpha"]
    assert_problem(await as_bot.get("/api/tasks?has_due_date=maybe"), 422)
    assert_problem(await as_bot.get("/api/tasks?sort=name"), 422)
    created_cursor = (await page("/api/tasks", "limit=1"))["next_cursor"]
    wrong_sort = await as_bot.get(f"/api/tasks?sort=title&cursor={created_cursor}")
    assert "invalid cursor" in assert_problem(wrong_sort, 422)["detail"]
    forged = base64.urlsafe_b64encode(json.dumps(["title", 5, 1]).encode()).decode()
    wrong_type = await as_bot.get(f"/api/tasks?sort=title&cursor={forged}")
    assert "invalid cursor" in assert_problem(wrong_type, 422, "validation-failed")["detail"]


async def test_list_refusals(as_bot: httpx.AsyncClient) -> None:
    assert_problem(await as_bot.get("/api/projects/web/tasks?limit=0"), 422)
    assert_problem(await as_bot.get("/api/projects/web/tasks?limit=501"), 422)
    assert_problem(await as_bot.get("/api/projects/web/tasks?status=done"), 422)
    assert_problem(await as_bot.get("/api/projects/web/tasks?cursor=garbage"), 422)
    typo = await as_bot.get("/api/projects/web/tasks?stauts=pending")
    refused = assert_problem(typo, 422, "validation-failed")
    assert refused["errors"] == [
        {
            "location": "query",
            "field": "stauts",
            "message": "unknown argument 'stauts': did you mean 'status'?",
            "type": "extra_forbidden",
        }
    ]
    from_path = assert_problem(await as_bot.get("/api/projects/web/tasks?project=default"), 400)
    assert "comes from the path" in from_path["detail"]


async def test_cursor_pages_are_complete_and_stable_under_inserts(
    as_bot: httpx.AsyncClient,
) -> None:
    for i in range(7):
        await _task(as_bot, f"t{i}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await as_bot.get(f"/api/projects/web/tasks?{query}")).json()
        seen += [t["title"] for t in page["items"]]
        pages += 1
        if pages == 1:
            await _task(as_bot, "added while paging")  # lands after the cursor: seen at the end
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"t{i}" for i in range(7)] + ["added while paging"]
    assert pages == 3


async def test_edit_task_with_if_match(as_bot: httpx.AsyncClient, db: Database) -> None:
    task = await _task(as_bot)
    url = f"/api/tasks/{task['id']}"
    response = await as_bot.put(
        url, json={"title": "Build it well", "tags": ["q3"]}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["version"]) == ("Build it well", 2)
    assert response.headers["etag"] == '"2"'
    entry = await assert_audited(db, response, "updated", "@bot")
    assert entry.details["changes"]["title"] == {"old": "Build it", "new": "Build it well"}

    before = await audit_count(db)
    assert_problem(await as_bot.put(url, json={"title": "Lost"}, headers={"If-Match": '"1"'}), 412)
    assert_problem(await as_bot.put(url, json={}), 422)  # nothing to change
    assert_problem(await as_bot.put(url, json={"status": "completed"}), 409)  # pending -> done
    assert_problem(await as_bot.put(url, json={"parent_id": task["id"]}), 409)  # a cycle
    assert_problem(await as_bot.put(url, json={"priority": "urgent"}), 422)
    assert (await as_bot.get(url)).json()["task"]["title"] == "Build it well"
    assert await audit_count(db) == before


async def test_delete_task_deletes_and_audits_the_subtree(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    task = await _task(as_bot, subtasks=[{"title": "child"}])
    url = f"/api/tasks/{task['id']}"
    assert_problem(await as_bot.delete(url, headers={"If-Match": '"5"'}), 412)
    response = await as_bot.delete(url, headers={"If-Match": '"1"'})
    assert response.status_code == 204
    entries = [e for e in await audit_for(db, response) if e.action == "deleted"]
    assert len(entries) == 2
    assert all((e.via, e.actor_handle) == ("http", "@bot") for e in entries)
    assert_problem(await as_bot.get(url), 404)
    assert_problem(await as_bot.delete(url), 404)


async def test_add_subtasks_one_or_many_all_or_nothing(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    parent = await _task(as_bot)
    url = f"/api/tasks/{parent['id']}/subtasks"
    one = await as_bot.post(url, json={"title": "one"})
    assert one.status_code == 201 and [t["title"] for t in one.json()] == ["one"]
    await assert_audited(db, one, "subtask_added", "@bot")
    many = await as_bot.post(url, json=[{"title": "two"}, {"title": "three", "tags": ["x"]}])
    assert [t["parent_id"] for t in many.json()] == [parent["id"]] * 2

    before = await audit_count(db)
    bad = await as_bot.post(url, json=[{"title": "four"}, {"title": ""}])
    assert_problem(bad, 422)
    assert_problem(await as_bot.post(url, json=[]), 422)
    assert_problem(await as_bot.post("/api/tasks/999999/subtasks", json={"title": "x"}), 404)
    subtree = (await as_bot.get(f"/api/tasks/{parent['id']}")).json()["subtree"]
    assert [t["title"] for t in subtree] == ["one", "two", "three"]
    assert await audit_count(db) == before


async def test_concurrent_edits_with_the_same_version_have_one_winner(
    as_bot: httpx.AsyncClient,
) -> None:
    task = await _task(as_bot)
    url = f"/api/tasks/{task['id']}"
    responses = await asyncio.gather(
        *(as_bot.put(url, json={"title": f"v{i}"}, headers={"If-Match": '"1"'}) for i in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 412, 412, 412]


async def test_a_depth_beyond_any_database_means_all_levels(as_bot: httpx.AsyncClient) -> None:
    """Found by schemathesis: a depth past int4 reached PostgreSQL and answered 500."""
    root = await _task(as_bot, "Root")
    await as_bot.post(f"/api/tasks/{root['id']}/subtasks", json={"title": "Child"})
    huge = await as_bot.get(f"/api/tasks/{root['id']}?depth=1099197346568607105024")
    assert huge.status_code == 200
    assert [n["title"] for n in huge.json()["subtree"]] == ["Child"]
    assert_problem(await as_bot.get(f"/api/tasks/{root['id']}?depth=-1"), 422)

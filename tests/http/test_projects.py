"""Projects and members over REST: happy paths, every refusal, each change's audit entry."""

from __future__ import annotations

import httpx

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import CreateProject
from taskflow.core.services import projects
from tests.http.conftest import (
    Agent,
    assert_audited,
    assert_problem,
    audit_count,
    register_agent,
)


async def test_list_projects_shows_mine_with_my_role(as_bot: httpx.AsyncClient) -> None:
    response = await as_bot.get("/api/projects")
    assert response.status_code == 200
    assert [(p["slug"], p["my_role"], p["version"]) for p in response.json()] == [
        ("default", "admin", 1),
        ("web", "admin", 1),
    ]


async def test_create_project_makes_me_owner_and_is_audited(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    response = await as_bot.post(
        "/api/projects", json={"slug": "mobile", "name": "Mobile app", "description": "iOS"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["slug"], body["owner"], body["my_role"], body["version"]) == (
        "mobile",
        "@bot",
        "owner",
        1,
    )
    assert response.headers["etag"] == '"1"'
    entry = await assert_audited(db, response, "created", "@bot")
    assert entry.entity_type == "project" and entry.project_id == body["id"]


async def test_create_project_refusals_change_nothing(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    before = await audit_count(db)
    duplicate = await as_bot.post("/api/projects", json={"slug": "web", "name": "Again"})
    assert_problem(duplicate, 409, "conflict")
    bad = await as_bot.post("/api/projects", json={"slug": "Not A Slug", "name": ""})
    problem = assert_problem(bad, 422, "validation-failed")
    assert {e["field"] for e in problem["errors"]} == {"slug", "name"}
    assert all(e["location"] == "body" for e in problem["errors"])
    extra = await as_bot.post("/api/projects", json={"slug": "x", "name": "X", "owner": "@me"})
    assert assert_problem(extra, 422)["errors"][0]["field"] == "owner"
    assert await audit_count(db) == before


async def test_get_project_by_slug_or_id_with_etag(as_bot: httpx.AsyncClient) -> None:
    by_slug = await as_bot.get("/api/projects/web")
    assert by_slug.status_code == 200
    assert by_slug.headers["etag"] == '"1"'
    by_id = await as_bot.get(f"/api/projects/{by_slug.json()['id']}")
    assert by_id.json() == by_slug.json()


async def test_non_member_gets_404_not_403(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    await projects.create_project(db, owner, CreateProject(slug="secret", name="Secret"))
    for response in (
        await as_bot.get("/api/projects/secret"),
        await as_bot.put("/api/projects/secret", json={"name": "Mine now"}),
        await as_bot.delete("/api/projects/secret"),
        await as_bot.get("/api/projects/secret/workers"),
        await as_bot.get("/api/projects/nope"),
    ):
        assert_problem(response, 404, "not-found")


async def test_update_project_is_audited_and_bumps_version(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    response = await as_bot.put(
        "/api/projects/web", json={"name": "Website"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Website"
    assert response.headers["etag"] == '"2"'
    entry = await assert_audited(db, response, "updated", "@bot")
    assert entry.details["changes"]["name"] == {"old": "Web app", "new": "Website"}


async def test_update_project_refusals(as_bot: httpx.AsyncClient, db: Database) -> None:
    before = await audit_count(db)
    stale = await as_bot.put("/api/projects/web", json={"name": "X"}, headers={"If-Match": '"7"'})
    assert assert_problem(stale, 412, "stale-version")["current_version"] == 1
    stale_body = await as_bot.put("/api/projects/web", json={"name": "X", "expected_version": 3})
    assert_problem(stale_body, 412)
    disagree = await as_bot.put(
        "/api/projects/web", json={"name": "X", "expected_version": 1}, headers={"If-Match": '"2"'}
    )
    assert_problem(disagree, 422)
    policy = await as_bot.put("/api/projects/web", json={"approval_policy": "review_required"})
    assert_problem(policy, 403, "forbidden")  # admins may not change the approval policy
    bad = await as_bot.put("/api/projects/web", json={"name": ""})
    assert_problem(bad, 422)
    malformed = await as_bot.put(
        "/api/projects/web", json={"name": "X"}, headers={"If-Match": "yesterday"}
    )
    assert_problem(malformed, 400)
    assert (await as_bot.get("/api/projects/web")).json()["name"] == "Web app"
    assert await audit_count(db) == before


async def test_delete_project_owner_only_and_audited(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    assert_problem(await as_bot.delete("/api/projects/web"), 403)  # bot is admin, not owner
    created = await as_bot.post("/api/projects", json={"slug": "tmp", "name": "Tmp"})
    assert_problem(await as_bot.delete("/api/projects/tmp", headers={"If-Match": '"9"'}), 412)
    response = await as_bot.delete("/api/projects/tmp", headers={"If-Match": '"1"'})
    assert response.status_code == 204 and response.content == b""
    await assert_audited(db, response, "deleted", "@bot")
    assert_problem(await as_bot.get(f"/api/projects/{created.json()['id']}"), 404)


async def test_members_add_change_remove_are_audited(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor
) -> None:
    await register_agent(db, owner, "@helper", project_role=None)
    added = await as_bot.post("/api/projects/web/workers", json={"handle": "@helper"})
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "member"
    await assert_audited(db, added, "member_added", "@bot", member="@helper", role="member")

    members = await as_bot.get("/api/projects/web/workers")
    assert {m["handle"]: m["role"] for m in members.json()} == {
        "@bot": "admin",
        "@helper": "member",
        "@sarah": "owner",
    }
    changed = await as_bot.patch("/api/projects/web/workers/@helper", json={"role": "viewer"})
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    await assert_audited(db, changed, "role_changed", "@bot", member="@helper")

    removed = await as_bot.delete("/api/projects/web/workers/@helper")
    assert removed.status_code == 204
    await assert_audited(db, removed, "member_removed", "@bot", member="@helper")


async def test_member_refusals(
    as_bot: httpx.AsyncClient, db: Database, owner: Actor, client: httpx.AsyncClient
) -> None:
    viewer = await register_agent(db, owner, "@viewer", project_role=Role.VIEWER)
    before = await audit_count(db)
    assert_problem(await as_bot.post("/api/projects/web/workers", json={"handle": "@sarah"}), 409)
    assert_problem(await as_bot.post("/api/projects/web/workers", json={"handle": "@ghost"}), 404)
    bad_role = await as_bot.post("/api/projects/web/workers", json={"handle": "@x", "role": "god"})
    assert assert_problem(bad_role, 422)["errors"][0]["field"] == "role"
    grant_owner = await as_bot.patch("/api/projects/web/workers/@bot", json={"role": "owner"})
    assert_problem(grant_owner, 403)  # only an owner makes owners
    assert_problem(await as_bot.delete("/api/projects/web/workers/@ghost"), 404)
    bad_handle = await as_bot.delete("/api/projects/web/workers/ghost")
    assert assert_problem(bad_handle, 422)["errors"][0]["location"] == "path"
    as_viewer = await client.post(
        "/api/projects/web/workers", json={"handle": "@bot"}, headers=viewer.headers
    )
    assert_problem(as_viewer, 403)
    assert await audit_count(db) == before


async def test_last_owner_cannot_leave(as_bot: httpx.AsyncClient, bot: Agent) -> None:
    await as_bot.post("/api/projects", json={"slug": "solo", "name": "Solo"})
    response = await as_bot.delete("/api/projects/solo/workers/@bot")
    assert "last owner" in assert_problem(response, 409)["detail"]


async def test_unknown_fields_are_refused_naming_the_nearest_one(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    before = await audit_count(db)
    body = assert_problem(await as_bot.put("/api/projects/web", json={"nmae": "New"}), 422)
    assert body["errors"] == [
        {
            "location": "body",
            "field": "nmae",
            "message": "unknown argument 'nmae': did you mean 'name'?",
            "type": "extra_forbidden",
        }
    ]
    query = assert_problem(await as_bot.get("/api/projects/web/workers?rol=admin"), 422)
    assert query["errors"][0]["location"] == "query" and query["errors"][0]["field"] == "rol"
    assert await audit_count(db) == before


async def test_an_update_that_changes_nothing_keeps_the_version(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    first = await as_bot.get("/api/projects/web")
    before = await audit_count(db)
    same = await as_bot.put("/api/projects/web", json={"name": first.json()["name"]})
    assert same.status_code == 200 and same.headers["etag"] == first.headers["etag"]
    assert await audit_count(db) == before, "a change that changes nothing writes nothing"


async def test_idempotent_create_replays_across_the_kernel(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    headers = {"Idempotency-Key": "create-docs-1"}
    first = await as_bot.post(
        "/api/projects", json={"slug": "docs", "name": "Docs"}, headers=headers
    )
    before = await audit_count(db)
    again = await as_bot.post(
        "/api/projects", json={"slug": "docs", "name": "Docs"}, headers=headers
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert await audit_count(db) == before

"""Projects and members: every operation's happy path, refusals, and exact audit entries."""

from __future__ import annotations

from taskflow.core.domain import ApprovalPolicy, Role, Via
from taskflow.core.errors import Conflict, Forbidden, NextStep, NotFound, StaleVersion
from taskflow.core.schemas import AddMember, CreateProject, CreateTask, UpdateProject
from taskflow.core.services import projects, tasks
from tests.conftest import make_human
from tests.core.conftest import assert_entry, refused, scalar, tail


async def test_create_project_makes_creator_owner_and_audits(db, owner):
    log = await tail(db)
    mcp = owner.through(Via.MCP, "req-42")
    cmd = CreateProject(slug="api", name="API", description="the backend")
    out = await projects.create_project(db, mcp, cmd)
    assert (out.slug, out.owner, out.my_role, out.version) == ("api", "@sarah", Role.OWNER, 1)
    assert out.approval_policy is ApprovalPolicy.NONE
    members = await projects.list_members(db, owner, "api")
    assert [(m.handle, m.role) for m in members] == [("@sarah", Role.OWNER)]
    entry = await log.one()
    assert_entry(
        entry, action="created", actor=owner, entity="project", entity_id=out.id, via="mcp"
    )
    assert entry["request_id"] == "req-42"
    assert entry["project_id"] == out.id
    assert entry["details"] == {
        "new": {
            "slug": "api",
            "name": "API",
            "description": "the backend",
            "approval_policy": "none",
            "allow_open_subtasks": False,
            "recur_subtasks": True,
        },
        "owner": "@sarah",
    }


async def test_create_project_duplicate_slug_is_refused(db, owner):
    err = await refused(
        db, projects.create_project(db, owner, CreateProject(slug="web", name="x")), Conflict
    )
    assert "already exists" in err.message and "another slug" in err.message


async def test_get_and_list_projects_only_for_members(db, owner):
    olive = await make_human(db, "@olive")
    web = await projects.get_project(db, owner, "web")
    assert (await projects.get_project(db, owner, web.id)).slug == "web"
    assert (await projects.get_project(db, owner, str(web.id))).slug == "web"
    assert [p.slug for p in await projects.list_projects(db, owner)] == ["default", "web"]
    assert await projects.list_projects(db, olive) == []
    err = await refused(db, projects.get_project(db, olive, "web"), NotFound)
    assert "not a member" in err.message
    # A missing project and a hidden one answer the same.
    missing = await refused(db, projects.get_project(db, olive, "nope"), NotFound)
    assert missing.message.replace("nope", "web") == err.message


async def test_update_project_audits_old_and_new(db, team):
    log = await tail(db)
    out = await projects.update_project(
        db, team.admin, "web", UpdateProject(name="Web 2", expected_version=1)
    )
    assert (out.name, out.version, out.my_role) == ("Web 2", 2, Role.ADMIN)
    entry = await log.one()
    assert_entry(entry, action="updated", actor=team.admin, entity="project", entity_id=out.id)
    assert entry["details"] == {"changes": {"name": {"old": "Web app", "new": "Web 2"}}}


async def test_update_project_refusals(db, team):
    cmd = UpdateProject(name="x")
    await refused(db, projects.update_project(db, team.stranger, "web", cmd), NotFound)
    for actor in (team.viewer, team.member):
        err = await refused(db, projects.update_project(db, actor, "web", cmd), Forbidden)
        assert "admin or higher" in err.message
    policy = UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    err = await refused(db, projects.update_project(db, team.admin, "web", policy), Forbidden)
    assert "owner" in err.message
    stale = UpdateProject(name="x", expected_version=7)
    err = await refused(db, projects.update_project(db, team.owner, "web", stale), StaleVersion)
    assert "expected_version=1" in err.message
    assert err.extra["current_version"] == 1


async def test_update_project_policy_by_owner_and_no_op_writes_nothing(db, owner):
    log = await tail(db)
    policy = UpdateProject(approval_policy=ApprovalPolicy.REVIEW_REQUIRED)
    out = await projects.update_project(db, owner, "web", policy)
    assert out.approval_policy is ApprovalPolicy.REVIEW_REQUIRED
    entry = await log.one()
    assert entry["details"] == {
        "changes": {"approval_policy": {"old": "none", "new": "review_required"}}
    }
    log = await tail(db)
    same = await projects.update_project(db, owner, "web", UpdateProject(name="Web app"))
    assert same.version == out.version
    assert await log.new() == []


async def test_delete_project_removes_tasks_and_audits_each(db, team):
    parent = await tasks.create_task(
        db, team.owner, CreateTask(title="p", project="web", subtasks=[{"title": "c"}])
    )
    child_id = parent.subtree[0].id
    await refused(db, projects.delete_project(db, team.admin, "web"), Forbidden)
    await refused(db, projects.delete_project(db, team.stranger, "web"), NotFound)
    await refused(db, projects.delete_project(db, team.owner, "web", 5), StaleVersion)
    log = await tail(db)
    web_id = await projects.delete_project(db, team.owner, "web", 1)
    entries = await log.new()
    assert {(e["entity_type"], e["entity_id"], e["action"]) for e in entries} == {
        ("task", parent.task.id, "deleted"),
        ("task", child_id, "deleted"),
        ("project", web_id, "deleted"),
    }
    for e in entries:
        assert e["actor_handle"] == "@sarah" and e["project_id"] == web_id
    project_entry = entries[-1]
    assert project_entry["details"] == {"old": {"slug": "web", "name": "Web app"}, "tasks": 2}
    assert await scalar(db, "SELECT count(*) FROM tasks") == 0
    assert (
        await scalar(db, "SELECT count(*) FROM project_members WHERE project_id = :p", p=web_id)
        == 0
    )
    await refused(db, projects.get_project(db, team.owner, "web"), NotFound)


async def test_add_member_and_its_refusals(db, team):
    newbie = await make_human(db, "@newbie")
    log = await tail(db)
    out = await projects.add_member(db, team.admin, "web", AddMember(handle="@newbie"))
    assert (out.handle, out.role) == ("@newbie", Role.MEMBER)
    entry = await log.one()
    assert_entry(entry, action="member_added", actor=team.admin, entity="project")
    assert entry["details"] == {"member": "@newbie", "role": "member"}
    assert (await projects.get_project(db, newbie, "web")).my_role is Role.MEMBER

    await make_human(db, "@other")
    add = AddMember(handle="@other")
    await refused(db, projects.add_member(db, team.stranger, "web", add), NotFound)
    await refused(db, projects.add_member(db, team.member, "web", add), Forbidden)
    owner_grant = AddMember(handle="@other", role=Role.OWNER)
    err = await refused(db, projects.add_member(db, team.admin, "web", owner_grant), Forbidden)
    assert "only an owner" in err.message
    err = await refused(
        db, projects.add_member(db, team.owner, "web", AddMember(handle="@ghost")), NotFound
    )
    assert err.next_step == NextStep("list_workers")
    err = await refused(
        db, projects.add_member(db, team.owner, "web", AddMember(handle="@mike")), Conflict
    )
    assert "change their role" in err.message


async def test_remove_member_and_last_owner(db, team):
    log = await tail(db)
    await projects.remove_member(db, team.admin, "web", "@mike")
    entry = await log.one()
    assert_entry(entry, action="member_removed", actor=team.admin, entity="project")
    assert entry["details"] == {"member": "@mike", "role": "member"}
    await refused(db, projects.get_project(db, team.member, "web"), NotFound)

    await refused(db, projects.remove_member(db, team.admin, "web", "@mike"), NotFound)
    await refused(db, projects.remove_member(db, team.member2, "web", "@vic"), Forbidden)
    await refused(db, projects.remove_member(db, team.stranger, "web", "@vic"), NotFound)
    err = await refused(db, projects.remove_member(db, team.admin, "web", "@sarah"), Forbidden)
    assert "owner" in err.message
    err = await refused(db, projects.remove_member(db, team.owner, "web", "@sarah"), Conflict)
    assert "last owner" in err.message and "make someone else owner first" in err.message
    # With a second owner, the first may leave.
    await projects.change_role(db, team.owner, "web", AddMember(handle="@ada", role=Role.OWNER))
    await projects.remove_member(db, team.admin, "web", "@sarah")
    assert [m.handle for m in await projects.list_members(db, team.admin, "web")] == [
        "@ada",
        "@nina",
        "@vic",
    ]


async def test_change_role_audits_and_refuses(db, team):
    log = await tail(db)
    out = await projects.change_role(db, team.admin, "web", AddMember(handle="@vic"))
    assert out.role is Role.MEMBER
    entry = await log.one()
    assert_entry(entry, action="role_changed", actor=team.admin, entity="project")
    assert entry["details"] == {
        "member": "@vic",
        "changes": {"role": {"old": "viewer", "new": "member"}},
    }
    log = await tail(db)
    await projects.change_role(db, team.admin, "web", AddMember(handle="@vic"))
    assert await log.new() == [], "an unchanged role writes no entry"

    demote_owner = AddMember(handle="@sarah", role=Role.ADMIN)
    err = await refused(db, projects.change_role(db, team.owner, "web", demote_owner), Conflict)
    assert "last owner" in err.message
    await refused(db, projects.change_role(db, team.admin, "web", demote_owner), Forbidden)
    promote = AddMember(handle="@mike", role=Role.OWNER)
    await refused(db, projects.change_role(db, team.admin, "web", promote), Forbidden)
    await refused(db, projects.change_role(db, team.member, "web", promote), Forbidden)
    await refused(db, projects.change_role(db, team.stranger, "web", promote), NotFound)
    await refused(
        db, projects.change_role(db, team.owner, "web", AddMember(handle="@olive")), NotFound
    )


async def test_list_members_needs_membership(db, team):
    members = await projects.list_members(db, team.viewer, "web")
    assert {m.handle: m.role for m in members} == {
        "@sarah": Role.OWNER,
        "@ada": Role.ADMIN,
        "@mike": Role.MEMBER,
        "@nina": Role.MEMBER,
        "@vic": Role.VIEWER,
    }
    await refused(db, projects.list_members(db, team.stranger, "web"), NotFound)


async def test_all_digit_slug_is_found_by_slug_not_mistaken_for_an_id(db, owner):
    """`2` is a valid slug (Phase 1 allowed it); a slug match wins over an id match."""
    from taskflow.core.services import workflow

    web = await projects.get_project(db, owner, "web")
    digits = await projects.create_project(db, owner, CreateProject(slug=str(web.id), name="D"))
    assert digits.id != web.id
    assert (await projects.get_project(db, owner, str(web.id))).id == digits.id
    t = (await tasks.create_task(db, owner, CreateTask(title="d", project=str(web.id)))).task
    assert t.project == str(web.id)
    claimed = await workflow.claim_next(db, owner, project=str(web.id))
    assert claimed.id == t.id
    # A numeric reference that matches no slug still means the id.
    default = await projects.get_project(db, owner, "default")
    assert (await projects.get_project(db, owner, default.id)).slug == "default"


async def test_concurrent_create_with_the_same_slug_is_a_conflict(db_url, db, owner):
    import asyncio

    from taskflow.core.db import Database

    wide = Database.from_url(db_url, pool_size=6)
    try:
        results = await asyncio.gather(
            *(
                projects.create_project(wide, owner, CreateProject(slug="race", name=str(i)))
                for i in range(6)
            ),
            return_exceptions=True,
        )
    finally:
        await wide.close()
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException)), results

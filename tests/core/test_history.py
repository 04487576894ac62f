"""Reading the audit trail: per task, project and actor, paginated, only what the reader may see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskflow.core.errors import NotFound, ValidationFailed
from taskflow.core.schemas import AuditFilter, CreateTask
from taskflow.core.services import history, tasks, workflow
from tests.core.conftest import refused, tail


async def _story(db, team):
    t = (await tasks.create_task(db, team.owner, CreateTask(title="t", project="web"))).task
    await workflow.start(db, team.member, t.id)
    await workflow.progress(db, team.member, t.id, 50)
    d = (await tasks.create_task(db, team.owner, CreateTask(title="d", project="default"))).task
    return t, d


async def test_list_audit_by_task_newest_first(db, team):
    t, _ = await _story(db, team)
    page = await history.list_audit(db, team.viewer, AuditFilter(task_id=t.id))
    assert [e.action for e in page.items] == ["progressed", "started", "created"]
    assert [e.actor for e in page.items] == ["@mike", "@mike", "@sarah"]
    assert all(e.via == "core" and e.task_id == t.id for e in page.items)
    assert page.items[0].details["progress_percent"] == 50
    assert page.next_cursor is None


async def test_list_audit_filters(db, team):
    t, d = await _story(db, team)
    by_actor = await history.list_audit(db, team.owner, AuditFilter(actor="@mike"))
    assert {e.actor for e in by_actor.items} == {"@mike"}
    assert [e.action for e in by_actor.items] == ["progressed", "started", "created"]
    assert by_actor.items[-1].entity_type == "worker", "@mike created himself (signed up)"
    started = await history.list_audit(db, team.owner, AuditFilter(action="started"))
    assert [e.entity_id for e in started.items] == [t.id]
    web = await history.list_audit(db, team.owner, AuditFilter(project="web"))
    assert d.id not in {e.task_id for e in web.items}
    assert {e.action for e in web.items} >= {"member_added", "created", "progressed"}
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (await history.list_audit(db, team.owner, AuditFilter(since=future))).items == []
    everything = await history.list_audit(db, team.owner, AuditFilter(until=future, limit=500))
    assert len(everything.items) >= 12


async def test_list_audit_paginates_without_gaps(db, team):
    await _story(db, team)
    all_ids = [
        e.id for e in (await history.list_audit(db, team.owner, AuditFilter(limit=500))).items
    ]
    got, cursor = [], None
    while True:
        page = await history.list_audit(db, team.owner, AuditFilter(limit=3, cursor=cursor))
        got += [e.id for e in page.items]
        if not (cursor := page.next_cursor):
            break
    assert got == all_ids == sorted(all_ids, reverse=True)
    await refused(
        db, history.list_audit(db, team.owner, AuditFilter(cursor="abc")), ValidationFailed
    )


async def test_readers_see_only_their_projects(db, team):
    t, d = await _story(db, team)
    mine = await history.list_audit(db, team.member, AuditFilter(limit=500))
    seen_projects = {e.project_id for e in mine.items}
    default_id = (await history.list_audit(db, team.owner, AuditFilter(task_id=d.id))).items[0]
    assert default_id.project_id not in seen_projects, "@mike is not in `default`"
    err = await refused(
        db, history.list_audit(db, team.member, AuditFilter(task_id=d.id)), NotFound
    )
    assert "check the id" in err.message
    await refused(db, history.list_audit(db, team.stranger, AuditFilter(project="web")), NotFound)
    outsider = await history.list_audit(db, team.stranger, AuditFilter(limit=500))
    assert all(e.project_id is None for e in outsider.items), "only worker/key entries"
    assert t.id not in {e.task_id for e in outsider.items}


async def test_get_audit_entry(db, team):
    t, _ = await _story(db, team)
    log = await tail(db)
    await workflow.block(db, team.member, t.id, "waiting")
    entry_id = (await log.one())["id"]
    got = await history.get_entry(db, team.viewer, entry_id)
    assert (got.action, got.actor, got.details["reason"]) == ("blocked", "@mike", "waiting")
    await refused(db, history.get_entry(db, team.stranger, entry_id), NotFound)
    await refused(db, history.get_entry(db, team.owner, 10**9), NotFound)


async def test_verify_audit_operation_reports_digest(db, team):
    await _story(db, team)
    out = await history.verify_log(db, team.stranger)
    assert out.ok and out.problems == [] and out.entries_checked >= 12
    assert out.digest and out.digest.startswith("tfd1:")
    assert (await history.verify_log(db, team.owner, with_digest=False)).digest is None

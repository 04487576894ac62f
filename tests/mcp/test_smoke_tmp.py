from tests.mcp.conftest import call, ok, refusal, audit_tail

async def test_smoke(bot, sarah, db, team):
    r = ok(await call(bot, "whoami"))
    print(r)
    r = ok(await call(bot, "create_task", title="Write docs", subtasks=[{"title": "a"}, {"title": "b", "assignee": "@ann"}]))
    print(r)
    tid = r["task"]["id"]
    print(await audit_tail(db, 4))
    print(refusal(await call(bot, "update_progress", task_id=tid, percent=10)))
    print(ok(await call(bot, "start_task", task_id=tid)))
    print(ok(await call(bot, "list_tasks")))
    print(ok(await call(bot, "get_task", task_id=tid)))
    print(ok(await call(bot, "update_task", task_id=tid, title="New", due_date="2026-12-01")))
    print(ok(await call(bot, "update_task", task_id=tid, due_date=None)))
    print(refusal(await call(bot, "approve_task", task_id=tid)))
    print(ok(await call(bot, "list_projects", project="default")))

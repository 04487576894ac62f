from taskflow.core import audit
from taskflow.core.schemas import CreateTask, TaskFilter
from taskflow.core.services import task_queries, tasks, workflow


async def test_smoke(db, owner):
    detail = await tasks.create_task(db, owner, CreateTask(title="Build it", project="web"))
    t = await workflow.start(db, owner, detail.task.id)
    assert t.status == "in_progress" and t.assignee == "@sarah"
    page = await task_queries.list_tasks(db, owner, TaskFilter(project="web"))
    assert [x.id for x in page.items] == [detail.task.id]
    result = await audit.verify(db)
    assert result.ok, result.problems
    assert result.entries_checked == 5

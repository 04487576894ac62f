"""list_tasks: keyset pages over every sort return each task exactly once, stay stable while
tasks are added between pages, and every filter selects exactly what it says."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from taskflow.core.dispatcher import run
from taskflow.core.errors import NotFound, ValidationFailed
from taskflow.core.handlers import task_rows
from taskflow.core.handlers.coordination import ChangeDependencies
from taskflow.core.handlers.task_list import ListTasks
from taskflow.core.handlers.workflow import Complete, RequestReview, Start
from taskflow.core.schemas import CreateProject, CreateTask, TaskFilter
from taskflow.core.services import projects, task_queries, tasks
from tests.conftest import make_human
from tests.core.conftest import refused, sql

N = 61
RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
INF = datetime.max.replace(tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SORTS = ["created", "updated", "priority", "due_date", "title"]

_SEED = """
    INSERT INTO tasks (project_id, title, description, status, priority, assignee_id,
                       created_by_id, tags, due_date, created_at, updated_at)
    SELECT :project,
           'task ' || g || CASE WHEN g % 10 = 0 THEN ' 100%_done' ELSE '' END,
           CASE WHEN g % 6 = 0 THEN 'mentions the Needle here' ELSE '' END,
           (ARRAY['pending', 'in_progress', 'review', 'completed', 'blocked'])[g % 5 + 1],
           (ARRAY['low', 'medium', 'high', 'critical'])[g % 4 + 1],
           CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN CAST(:a AS bigint) ELSE CAST(:b AS bigint) END,
           CASE WHEN g % 2 = 0 THEN CAST(:a AS bigint) ELSE CAST(:b AS bigint) END,
           CASE g % 4 WHEN 0 THEN ARRAY['x', 'y'] WHEN 1 THEN ARRAY['x'] WHEN 2 THEN ARRAY['y']
                ELSE '{}' END,
           CASE WHEN g % 5 = 0 THEN NULL
                ELSE CAST(:t0 AS timestamptz) + (g % 9) * interval '1 day' END,
           CAST(:t0 AS timestamptz) - (g / 3) * interval '1 minute',
           CAST(:t0 AS timestamptz) + ((g * 7) % 13) * interval '1 second'
    FROM generate_series(1, :n) AS g
"""


async def _seed(db, project_id, a, b, n=N):
    await sql(db, _SEED, project=project_id, a=a, b=b, t0=T0, n=n)


async def _rows(db, project_ids):
    rows = await sql(
        db,
        "SELECT t.*, a.handle AS assignee, c.handle AS created_by FROM tasks t "
        "LEFT JOIN workers a ON a.id = t.assignee_id JOIN workers c ON c.id = t.created_by_id "
        "WHERE t.project_id = ANY(:p)",
        p=project_ids,
    )
    return [r._asdict() for r in rows]


def _key(sort):
    return {
        "created": lambda r: (r["created_at"], r["id"]),
        "updated": lambda r: (r["updated_at"], r["id"]),
        "priority": lambda r: (RANK[r["priority"]], r["id"]),
        "due_date": lambda r: (r["due_date"] or INF, r["id"]),
        "title": lambda r: (r["title"].lower(), r["id"]),
    }[sort]


async def _all_pages(db, actor, limit=7, **filters):
    ids, cursor, pages = [], None, 0
    while True:
        page = await task_queries.list_tasks(
            db, actor, TaskFilter(limit=limit, cursor=cursor, **filters)
        )
        assert len(page.items) <= limit
        ids += [t.id for t in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return ids, pages


@pytest.fixture
async def seeded(db, owner):
    mike = await make_human(db, "@mike")
    await projects.add_member(db, owner, "web", projects.AddMember(handle="@mike"))
    web = await projects.get_project(db, owner, "web")
    await _seed(db, web.id, owner.worker_id, mike.worker_id)
    return web


@pytest.mark.parametrize(
    ("sort", "reverse"),
    list(product(SORTS, [False, True])),
)
async def test_pages_cover_every_task_once_in_order(db, owner, seeded, sort, reverse):
    ids, pages = await _all_pages(db, owner, project="web", sort=sort, reverse=reverse)
    rows = await _rows(db, [seeded.id])
    expected = [r["id"] for r in sorted(rows, key=_key(sort), reverse=reverse)]
    assert ids == expected
    assert pages == -(-N // 7)


@pytest.mark.parametrize("sort", SORTS)
async def test_pages_stay_stable_when_tasks_arrive_between_them(db, owner, seeded, sort):
    first = await task_queries.list_tasks(db, owner, TaskFilter(project="web", sort=sort, limit=10))
    seen = [t.id for t in first.items]
    cursor = first.next_cursor
    for i in range(3):
        for priority in ("critical", "low"):
            await tasks.create_task(
                db,
                owner,
                CreateTask(
                    title=f"late {i}",
                    project="web",
                    priority=priority,
                    due_date="2026-01-01" if i else None,
                ),
            )
    while cursor:
        page = await task_queries.list_tasks(
            db, owner, TaskFilter(project="web", sort=sort, limit=10, cursor=cursor)
        )
        seen += [t.id for t in page.items]
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)), "a task appeared twice"
    originals = {r["id"] for r in await _rows(db, [seeded.id]) if r["title"].startswith("task")}
    assert originals <= set(seen), "a task that existed all along was skipped"


async def test_filters_select_exactly_what_they_say(db, owner, seeded):
    other = await projects.get_project(db, owner, "default")
    await _seed(db, other.id, owner.worker_id, owner.worker_id, n=9)
    olive = await make_human(db, "@olive")
    await projects.create_project(db, olive, CreateProject(slug="secret", name="S"))
    secret = await projects.get_project(db, olive, "secret")
    await _seed(db, secret.id, olive.worker_id, olive.worker_id, n=5)
    parent = (
        await tasks.create_task(
            db, owner, CreateTask(title="parent", project="web", subtasks=[{"title": "kid"}])
        )
    ).task
    rows = await _rows(db, [seeded.id, other.id])
    web_rows = [r for r in rows if r["project_id"] == seeded.id]
    due = T0 + timedelta(days=4)
    cases = [
        ({}, rows),
        ({"project": "web"}, web_rows),
        ({"project": "web", "status": "review"}, [r for r in web_rows if r["status"] == "review"]),
        ({"project": "web", "priority": "high"}, [r for r in web_rows if r["priority"] == "high"]),
        ({"assignee": "@mike"}, [r for r in rows if r["assignee"] == "@mike"]),
        ({"no_assignee": True}, [r for r in rows if r["assignee"] is None]),
        ({"created_by": "@mike"}, [r for r in rows if r["created_by"] == "@mike"]),
        ({"tags": ["x"]}, [r for r in rows if "x" in r["tags"]]),
        ({"tags": ["x", "y"]}, [r for r in rows if {"x", "y"} <= set(r["tags"])]),
        ({"search": "needle"}, [r for r in rows if "needle" in r["description"].lower()]),
        ({"search": "100%_"}, [r for r in rows if "100%_" in r["title"]]),
        ({"search": "0%"}, [r for r in rows if "0%" in r["title"]]),
        ({"due_before": due}, [r for r in rows if r["due_date"] and r["due_date"] < due]),
        ({"due_after": due}, [r for r in rows if r["due_date"] and r["due_date"] > due]),
        (
            {"due_after": "2026-01-03", "due_before": "2026-01-06"},
            [
                r
                for r in rows
                if r["due_date"] and T0 + timedelta(days=2) < r["due_date"] < T0 + timedelta(days=5)
            ],
        ),
        ({"has_due_date": True}, [r for r in rows if r["due_date"] is not None]),
        ({"has_due_date": False}, [r for r in rows if r["due_date"] is None]),
        (
            {"has_due_date": True, "due_after": due},
            [r for r in rows if r["due_date"] and r["due_date"] > due],
        ),
        ({"parent_id": parent.id}, [r for r in rows if r["parent_id"] == parent.id]),
        ({"top_level": True, "project": "web"}, [r for r in web_rows if r["parent_id"] is None]),
        (
            {"status": "pending", "assignee": "@sarah", "tags": ["y"]},
            [
                r
                for r in rows
                if r["status"] == "pending" and r["assignee"] == "@sarah" and "y" in r["tags"]
            ],
        ),
    ]
    for filters, expected in cases:
        ids, _ = await _all_pages(db, owner, limit=25, **filters)
        assert sorted(ids) == sorted(r["id"] for r in expected), filters
        assert expected or filters.get("search") == "100%_", f"vacuous case {filters}"
    assert (await _all_pages(db, olive))[0] and set((await _all_pages(db, olive))[0]).isdisjoint(
        r["id"] for r in rows
    )
    await refused(db, task_queries.list_tasks(db, olive, TaskFilter(project="web")), NotFound)


async def test_bad_cursors_are_refused(db, owner, seeded):
    page = await task_queries.list_tasks(db, owner, TaskFilter(project="web", limit=5))
    for bad in ("garbage", "!!", page.next_cursor + "x"):
        err = await refused(
            db,
            task_queries.list_tasks(db, owner, TaskFilter(project="web", cursor=bad)),
            ValidationFailed,
        )
        assert "next_cursor" in err.message
    await refused(
        db,
        task_queries.list_tasks(
            db, owner, TaskFilter(project="web", sort="priority", cursor=page.next_cursor)
        ),
        ValidationFailed,
    )
    forged = base64.urlsafe_b64encode(json.dumps(["created", 5, 1]).encode()).decode()
    await refused(
        db,
        task_queries.list_tasks(db, owner, TaskFilter(project="web", cursor=forged)),
        ValidationFailed,
    )


async def test_title_sort_ignores_case_and_breaks_ties_by_id(db, owner):
    titles = ["bravo", "Alpha", "charlie", "alpha", "Delta", "ALPHA", "éclair", "Zulu"]
    made = [
        (await tasks.create_task(db, owner, CreateTask(title=t, project="web"))).task
        for t in titles
    ]
    ids = {t.title: t.id for t in made}
    expected = ["Alpha", "alpha", "ALPHA", "bravo", "charlie", "Delta", "Zulu", "éclair"]
    first = await task_queries.list_tasks(
        db, owner, TaskFilter(project="web", sort="title", limit=3)
    )
    assert [t.title for t in first.items] == expected[:3]
    rest, _ = await _all_pages(db, owner, limit=3, project="web", sort="title")
    assert rest == [ids[t] for t in expected]
    second = await task_queries.list_tasks(
        db, owner, TaskFilter(project="web", sort="title", limit=3, cursor=first.next_cursor)
    )
    assert [t.title for t in second.items] == expected[3:6]
    backwards, pages = await _all_pages(
        db, owner, limit=3, project="web", sort="title", reverse=True
    )
    assert backwards == [ids[t] for t in reversed(expected)] and pages == 3


def _forge(*parts):
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode()


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("title", _forge("title", 5, 1)),
        ("title", _forge("title", None, 1)),
        ("title", _forge("title", ["a"], 1)),
        ("title", _forge("title", "a\x00b", 1)),
        ("title", base64.urlsafe_b64encode(b'["title", "\\ud800", 1]').decode()),
        ("title", _forge("title", "alpha", "1")),
        ("title", _forge("title", "alpha", 2**63)),
        ("priority", _forge("priority", "high", 1)),
        ("priority", _forge("priority", 99, 1)),
        ("priority", _forge("priority", True, 1)),
        ("due_date", _forge("due_date", 7, 1)),
        ("created", _forge("created", "2026-01-01T00:00:00", 1)),
    ],
)
async def test_cursors_with_a_value_of_the_wrong_type_are_refused(db, owner, seeded, sort, cursor):
    err = await refused(
        db,
        task_queries.list_tasks(db, owner, TaskFilter(project="web", sort=sort, cursor=cursor)),
        ValidationFailed,
    )
    assert "invalid cursor" in err.message and err.extra["field"] == "cursor"


async def test_the_listing_reads_a_task_exactly_as_every_other_read(db, team) -> None:
    """`list_tasks` is SQL text on the driver (no ORM), every other read goes through the
    mapped models: the same task must come out of both field for field, so the two column lists
    cannot drift apart."""
    owner, member = team.owner, team.member
    done = await tasks.create_task(db, owner, CreateTask(title="Done first", project="web"))
    await run(db, owner, Start(task_id=done.task.id))
    await run(db, owner, Complete(task_id=done.task.id))
    open_ = await tasks.create_task(db, owner, CreateTask(title="Still open", project="web"))
    rich = await tasks.create_task(
        db,
        owner,
        CreateTask(
            title="Every field",
            description="described",
            project="web",
            priority="high",
            tags=["x", "y"],
            due_date=T0,
            recurrence="weekly",
            required_capabilities=["sql"],
            assignee=member.handle,
            parent_id=open_.task.id,
        ),
    )
    rid = rich.task.id
    await run(db, owner, ChangeDependencies(task_id=rid, blocked_by=[done.task.id]))
    await run(db, member, Start(task_id=rid))
    await run(db, member, RequestReview(task_id=rid, reviewer=owner.handle))
    listed = await run(db, owner, ListTasks(project="web", limit=500))
    async with db.transaction() as session:
        for item in listed.items:
            assert item == await task_rows.read_task(session, item.id)
    mine = next(t for t in listed.items if t.id == rid)
    assert (mine.reviewer, mine.assignee, mine.parent_task_id) == (
        owner.handle,
        member.handle,
        open_.task.id,
    )
    assert [b.model_dump() for b in mine.blocked_by] == [{"id": done.task.id, "done": True}]

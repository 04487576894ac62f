"""Comments and the feed, against the core: who may comment and edit, mentions, what each reader
of the feed sees, resuming by entry id, and order under concurrent, late or rolled-back commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from taskflow.core import audit, feed
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.dispatcher import run
from taskflow.core.errors import Forbidden, NotFound, ValidationFailed
from taskflow.core.handlers.comments import AddComment, EditComment, ListComments
from taskflow.core.handlers.feed import ListChanges
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks, workflow
from tests.conftest import database_url_for, make_human
from tests.core.conftest import Team, refused, scalar, tail
from tests.support.servers import plain_dsn


@pytest.fixture
def direct(db_url: str, pg_server_url: str) -> str:
    """The test database straight on PostgreSQL (as DATABASE_DIRECT_URL gives it): LISTEN and
    the announcer's session lock need it, also when `db` goes through PgBouncer."""
    return plain_dsn(database_url_for(pg_server_url, str(make_url(db_url).database)))


async def _task(db: Database, actor: Actor, title: str = "t", parent: int | None = None) -> int:
    made = await tasks.create_task(
        db, actor, CreateTask(project="web", title=title, parent_id=parent)
    )
    return made.task.id


async def test_comment_mentions_edit_and_history(db: Database, team: Team) -> None:
    task_id = await _task(db, team.owner)
    log = await tail(db)
    said = await run(
        db, team.member, AddComment(task_id=task_id, body="Ask @nina and @nobody, also @nina")
    )
    assert (said.author, said.revision, said.mentions) == ("@mike", 1, ["@nina"])
    entry = await log.one()
    assert (entry["action"], entry["entity_type"], entry["task_id"]) == (
        "commented",
        "comment",
        task_id,
    )
    assert entry["details"]["mentions"] == ["@nina"]

    edited = await run(db, team.member, EditComment(comment_id=said.id, body="Ask **@ada**"))
    assert (edited.id, edited.revision, edited.mentions) == (said.id, 2, ["@ada"])
    latest = await run(db, team.viewer, ListComments(task_id=task_id))
    assert [(c.id, c.revision, c.body) for c in latest] == [(said.id, 2, "Ask **@ada**")]
    history = await run(db, team.viewer, ListComments(task_id=task_id, history=True))
    assert [c.body for c in history] == [said.body, "Ask **@ada**"], "the old text stays"
    assert [e["action"] for e in await log.new()] == ["commented", "comment_edited"]


async def test_comment_refusals_change_nothing(db: Database, team: Team, direct: str) -> None:
    task_id = await _task(db, team.owner)
    said = await run(db, team.member, AddComment(task_id=task_id, body="mine"))
    await refused(db, run(db, team.stranger, AddComment(task_id=task_id, body="x")), NotFound)
    await refused(db, run(db, team.viewer, AddComment(task_id=task_id, body="x")), Forbidden)
    await refused(
        db, run(db, team.member2, EditComment(comment_id=said.id, body="x")), Forbidden, "yours"
    )
    await refused(db, run(db, team.stranger, EditComment(comment_id=said.id, body="x")), NotFound)
    await refused(
        db, run(db, team.member, AddComment(task_id=task_id, body="  \n")), ValidationFailed
    )
    await refused(db, run(db, team.stranger, ListComments(task_id=task_id)), NotFound)
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        conn = await asyncpg.connect(direct)
        try:
            await conn.execute("UPDATE comments SET body = 'forged'")
        finally:
            await conn.close()


async def test_list_changes_visibility_resume_and_filters(db: Database, team: Team) -> None:
    first = await run(db, team.member, ListChanges(limit=1))
    mark = first.next_after
    parent = await _task(db, team.owner, "parent")
    child = await _task(db, team.owner, "child", parent)
    other = await _task(db, team.owner, "other")
    await workflow.start(db, team.member, child)
    await run(db, team.owner, AddComment(task_id=other, body="@mike look"))
    outsider = await make_human(db, "@zed")  # an entry outside any project: visible to all

    seen = await run(db, team.member, ListChanges(after=mark))
    actions = [(e.action, e.task_id) for e in seen.items]
    assert ("started", child) in actions and ("commented", other) in actions
    assert seen.more is False
    again = await run(db, team.member, ListChanges(after=seen.next_after))
    assert again.items == [] and again.next_after == seen.next_after, "nothing twice"

    paged, after = [], mark
    while True:
        page = await run(db, team.member, ListChanges(after=after, limit=2))
        paged += page.items
        after = page.next_after
        if not page.more:
            break
    assert [e.id for e in paged] == [e.id for e in seen.items], "pages add up to the whole"

    stranger = await run(db, team.stranger, ListChanges(after=mark))
    assert all(e.project_id is None for e in stranger.items)
    assert any(e.entity_id == outsider.worker_id for e in stranger.items)

    subtree = await run(db, team.member, ListChanges(after=mark, task_id=parent))
    assert {e.task_id for e in subtree.items} == {parent, child}
    in_web = await run(db, team.member, ListChanges(after=mark, project="web"))
    assert in_web.items and all(e.project_id == in_web.items[0].project_id for e in in_web.items)
    by_actor = await run(db, team.member, ListChanges(after=mark, actor="@mike"))
    assert [e.action for e in by_actor.items] == ["started"]
    mine = await run(db, team.member, ListChanges(after=mark, mine=True))
    assert {(e.action, e.task_id) for e in mine.items} >= {("commented", other), ("started", child)}
    assert all(e.task_id in (other, child) for e in mine.items)
    nina = await run(db, team.member2, ListChanges(after=mark, mine=True))
    assert nina.items == []

    await refused(db, run(db, team.stranger, ListChanges(project="web")), NotFound)
    await refused(db, run(db, team.stranger, ListChanges(task_id=parent)), NotFound)
    await refused(db, run(db, team.member, ListChanges(after=10**9)), ValidationFailed)


async def test_a_late_commit_is_never_passed_over(db: Database, team: Team, direct: str) -> None:
    """Entry ids are taken at insert, commits land in any order: a reader that passed a later
    id must still get the earlier one when it commits, exactly once."""
    task_a = await _task(db, team.owner, "a")
    task_b = await _task(db, team.owner, "b")
    start = (await run(db, team.member, ListChanges(limit=1))).next_after
    slow = await asyncpg.connect(direct)
    try:
        tx = slow.transaction()
        await tx.start()  # takes its audit id first, commits last
        await slow.execute(
            "INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, "
            "actor_id, actor_handle, actor_type, details, via, created_at, prev_hash, hash) "
            "SELECT 'probe', 1, 1, project_id, id, 'probe', NULL, '@probe', 'human', '{}', "
            "'core', now(), '\\x00', '\\x00' FROM tasks WHERE id = $1",
            task_a,
        )
        await workflow.start(db, team.member, task_b)  # a later id, committed now
        held = await run(db, team.member, ListChanges(after=start))
        assert held.items == [], "nothing past a transaction still running"
        await tx.commit()
    finally:
        await slow.close()
    both = await run(db, team.member, ListChanges(after=start))
    assert [e.action for e in both.items] == ["probe", "started"]
    assert both.items[0].id < both.items[1].id


async def test_one_announcer_notifies_committed_entries_only(
    db: Database, team: Team, direct: str
) -> None:
    """Writers never NOTIFY; the one hub holding the announcer lock does, once it read new
    committed entries: a rolled-back change announces nothing. Another hub is woken by it, and
    takes over when the announcer goes."""
    task_id = await _task(db, team.owner)
    url = feed.listen_url_for(db, direct)
    first, second = feed.Hub(db, listen_url=url), feed.Hub(db, listen_url=url)
    listener = await asyncpg.connect(direct)
    heard: list[str] = []
    await listener.add_listener(feed.CHANNEL, lambda *args: heard.append(args[-1]))
    follower = feed.follow(second, db, await _scope(db, team.member), None)
    try:
        await first.start()
        await _until(lambda: first.announcing)
        next_event = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(0.3)
        assert not second.announcing, "one announcer per database"
        async with db.transaction() as session:  # a change rolled back after its audit entry
            await session.execute(
                text("UPDATE tasks SET title = 'never' WHERE id = :id"), {"id": task_id}
            )
            await audit.record(
                session, team.owner, entity_type="task", entity_id=task_id, action="updated"
            )
            await session.rollback()
        await asyncio.sleep(0.5)
        assert heard == [] and not next_event.done(), "a rolled-back change announces nothing"

        said = await run(db, team.member, AddComment(task_id=task_id, body="real"))
        event = await asyncio.wait_for(next_event, 5)
        assert (event.action, event.details["body"]) == ("commented", said.body)
        await _until(lambda: bool(heard))
        entry = await scalar(db, "SELECT max(id) FROM audit_log WHERE entity_type = 'comment'")
        assert feed.parse_notice(heard[0]) == feed.Notice(entry)

        await first.close()  # its lock goes with its connection: the other hub takes over
        await _until(lambda: second.announcing, seconds=feed.ANNOUNCER_RETRY_SECONDS * 5)
        await run(db, team.member, AddComment(task_id=task_id, body="still heard"))
        event = await asyncio.wait_for(anext(follower), 5)
        assert event.details["body"] == "still heard"
    finally:
        await follower.aclose()
        await first.close()
        await second.close()
        await listener.close()


async def _until(check: Callable[[], bool], seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not in time")


async def test_follow_live_catch_up_and_overflow(
    db: Database, team: Team, direct: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower gets what it missed, then live events, exactly once, even after falling far
    behind the hub (its queue overflows and it catches up by query)."""
    monkeypatch.setattr(feed, "QUEUE_BATCHES", 2)
    hub = feed.Hub(db, listen_url=feed.listen_url_for(db, direct))
    task_id = await _task(db, team.owner)
    start = await _position(db, (await run(db, team.member, ListChanges(limit=1))).next_after)
    missed = [
        await run(db, team.member, AddComment(task_id=task_id, body=f"m{i}")) for i in range(3)
    ]
    stream = feed.follow(hub, db, await _scope(db, team.member), start)
    got: list[feed.Event] = []
    try:
        for _ in range(3):
            got.append(await asyncio.wait_for(anext(stream), 5))
        for i in range(10):  # more batches than the queue holds while nobody reads
            await run(db, team.member, AddComment(task_id=task_id, body=f"live{i}"))
            await asyncio.sleep(0.05)
        for _ in range(10):
            got.append(await asyncio.wait_for(anext(stream), 5))
    finally:
        await stream.aclose()
        await hub.close()
    bodies = [e.details["body"] for e in got]
    assert bodies == [c.body for c in missed] + [f"live{i}" for i in range(10)]
    assert hub.mode == "listen"


async def _position(db: Database, entry_id: int) -> feed.Position:
    async with db.engine.connect() as conn:
        return await feed.position_of((await conn.get_raw_connection()).driver_connection, entry_id)


async def _scope(db: Database, actor: Actor, **filters: object) -> feed.Scope:
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        return await feed.resolve_scope(raw, actor, **filters)  # type: ignore[arg-type]


async def test_polling_hub_delivers_too(db: Database, team: Team) -> None:
    """Behind a pooler (no LISTEN) the hub reads the log on a timer instead."""
    hub = feed.Hub(db, listen_url=None, poll_seconds=0.1)
    task_id = await _task(db, team.owner)
    stream = feed.follow(hub, db, await _scope(db, team.member2, task_id=task_id), None)
    try:
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        await run(db, team.member, AddComment(task_id=task_id, body="polled"))
        event = await asyncio.wait_for(first, 5)
    finally:
        await stream.aclose()
        await hub.close()
    assert (event.action, event.details["body"], hub.mode) == ("commented", "polled", "poll")

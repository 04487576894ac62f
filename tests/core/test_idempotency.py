"""run_once: a retried request with the same key gets the first answer and changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from taskflow.core.errors import Conflict, NotFound, ValidationFailed
from taskflow.core.idempotency import run_once
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks
from tests.conftest import make_human
from tests.core.conftest import scalar, snapshot


def _creator(db, actor, calls):
    async def operation():
        calls.append(1)
        detail = await tasks.create_task(db, actor, CreateTask(title="once", project="web"))
        return 201, detail.task

    return operation


async def test_replay_returns_the_stored_answer_without_running_again(db, owner):
    calls: list[int] = []
    body = {"title": "once"}
    status, first, replayed = await run_once(
        db, owner, "k1", "POST /tasks", body, _creator(db, owner, calls)
    )
    assert (status, replayed, len(calls)) == (201, False, 1)
    before = await snapshot(db)
    status2, second, replayed2 = await run_once(
        db, owner, "k1", "POST /tasks", body, _creator(db, owner, calls)
    )
    assert (status2, replayed2, len(calls)) == (201, True, 1)
    assert second["id"] == first.id and second["title"] == "once"
    assert await snapshot(db) == before, "a replay writes nothing"
    assert await scalar(db, "SELECT count(*) FROM tasks") == 1


async def test_same_key_different_body_is_refused(db, owner):
    calls: list[int] = []
    await run_once(db, owner, "k1", "POST /tasks", {"title": "a"}, _creator(db, owner, calls))
    before = await snapshot(db)
    with pytest.raises(ValidationFailed, match="different request"):
        await run_once(db, owner, "k1", "POST /tasks", {"title": "b"}, _creator(db, owner, calls))
    with pytest.raises(ValidationFailed, match="different request"):
        await run_once(db, owner, "k1", "POST /other", {"title": "a"}, _creator(db, owner, calls))
    assert len(calls) == 1 and await snapshot(db) == before


async def test_keys_are_per_worker(db, owner):
    other = await make_human(db, "@mike")
    from taskflow.core.schemas import AddMember
    from taskflow.core.services import projects

    await projects.add_member(db, owner, "web", AddMember(handle="@mike"))
    calls: list[int] = []
    await run_once(db, owner, "same", "s", {}, _creator(db, owner, calls))
    _, _, replayed = await run_once(db, other, "same", "s", {}, _creator(db, other, calls))
    assert not replayed and len(calls) == 2


async def test_in_flight_duplicate_gets_a_conflict(db, owner):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow():
        started.set()
        await release.wait()
        return 200, {"ok": True}

    first = asyncio.create_task(run_once(db, owner, "k", "s", {}, slow))
    await started.wait()
    with pytest.raises(Conflict, match="still being processed"):
        await run_once(db, owner, "k", "s", {}, slow)
    release.set()
    assert await first == (200, {"ok": True}, False)
    assert await run_once(db, owner, "k", "s", {}, slow) == (200, {"ok": True}, True)


async def test_a_failure_frees_the_key_for_a_retry(db, owner):
    attempts: list[int] = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            await tasks.create_task(db, owner, CreateTask(title="x", project="nope"))
        return 201, {"n": len(attempts)}

    with pytest.raises(NotFound):
        await run_once(db, owner, "k", "s", {"n": 1}, flaky)
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys") == 0
    assert await run_once(db, owner, "k", "s", {"n": 1}, flaky) == (201, {"n": 2}, False)


async def test_no_key_just_runs_and_long_keys_are_refused(db, owner):
    calls: list[int] = []
    for _ in range(2):
        _, _, replayed = await run_once(db, owner, None, "s", {}, _creator(db, owner, calls))
        assert not replayed
    assert len(calls) == 2
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys") == 0
    with pytest.raises(ValidationFailed, match="too long"):
        await run_once(db, owner, "k" * 256, "s", {}, _creator(db, owner, calls))


async def test_expired_keys_run_again(db, owner):
    calls: list[int] = []
    await run_once(db, owner, "k", "s", {}, _creator(db, owner, calls))
    from tests.core.conftest import sql

    await sql(db, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    _, _, replayed = await run_once(db, owner, "k", "s", {}, _creator(db, owner, calls))
    assert not replayed and len(calls) == 2

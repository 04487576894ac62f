"""Every state-changing operation writes its audit entry: a table-driven guard.

For each mutating operation in `REGISTRY` the table below holds a scenario (setup, then the call).
The test counts audit rows around the call and checks the newest entry's action and entity. A
new mutating operation that is not added here fails `test_every_mutating_operation_is_covered`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from taskflow.core import webhooks
from taskflow.core.config import Settings
from taskflow.core.declarations import REGISTRY
from taskflow.core.dispatcher import run
from taskflow.core.domain import Role, TaskStatus
from taskflow.core.handlers.comments import AddComment, EditComment
from taskflow.core.handlers.coordination import ChangeDependencies, Heartbeat
from taskflow.core.handlers.webhooks import (
    CreateWebhook,
    DeleteWebhook,
    ListWebhookDeliveries,
    RedeliverWebhookDelivery,
    RotateWebhookSecret,
    UpdateWebhook,
)
from taskflow.core.handlers.workflow import ClaimNext, MoveTask, ReopenTask
from taskflow.core.schemas import (
    AddMember,
    CreateProject,
    CreateTask,
    EditTask,
    RegisterAgent,
    SubtaskSpec,
    UpdateProject,
)
from taskflow.core.services import projects, tasks, workers, workflow
from tests.conftest import make_human
from tests.core.conftest import add_to, make_agent, scalar, tail


@dataclass
class Scenario:
    """`call(db, owner, ctx)` after `setup(db, owner) -> ctx`; the entry it must write."""

    call: Callable[[Any, Any, dict[str, Any]], Awaitable[Any]]
    action: str
    entity: str
    setup: Callable[[Any, Any], Awaitable[dict[str, Any]]] | None = None


async def _with_task(db, owner, status: str = "pending") -> dict[str, Any]:
    t = (await tasks.create_task(db, owner, CreateTask(title="t", project="web"))).task
    nina = await add_to(db, owner, "web", "@nina", Role.MEMBER)
    if status != "pending":
        await workflow.start(db, nina, t.id)
    if status == "review":
        await workflow.request_review(db, nina, t.id)
    if status == "blocked":
        await workflow.block(db, nina, t.id)
    if status == "completed":
        await workflow.complete(db, nina, t.id)
    return {"task": t.id, "nina": nina}


async def _commented(db, owner) -> dict[str, Any]:
    ctx = await _with_task(db, owner)
    said = await run(db, owner, AddComment(task_id=ctx["task"], body="first"))
    return {**ctx, "comment": said.id}


def _task_in(status: str) -> Callable[[Any, Any], Awaitable[dict[str, Any]]]:
    async def setup(db, owner):
        return await _with_task(db, owner, status)

    return setup


async def _two_tasks(db, owner) -> dict[str, Any]:
    ctx = await _with_task(db, owner)
    other = (await tasks.create_task(db, owner, CreateTask(title="o", project="web"))).task
    return {**ctx, "other": other.id}


async def _claimed(db, owner) -> dict[str, Any]:
    ctx = await _with_task(db, owner)
    await run(db, owner, ClaimNext(project="web"))
    return ctx


async def _with_member(db, owner) -> dict[str, Any]:
    await add_to(db, owner, "web", "@nina", Role.MEMBER)
    return {}


async def _with_human(db, owner) -> dict[str, Any]:
    await make_human(db, "@nina")
    return {}


async def _with_agent(db, owner) -> dict[str, Any]:
    await make_agent(db, owner, "@bot")
    keys = await workers.list_api_keys(db, owner, "@bot")
    return {"key": keys[0].id}


async def _with_deactivated_agent(db, owner) -> dict[str, Any]:
    await make_agent(db, owner, "@bot")
    await workers.deactivate_agent(db, owner, "@bot")
    return {}


async def _with_webhook(db, owner) -> dict[str, Any]:
    hook = "http://127.0.0.1:9/hook"
    issued = await run(db, owner, CreateWebhook(project="web", url=hook))
    return {"hook": issued.webhook.id}


async def _with_failed_delivery(db, owner) -> dict[str, Any]:
    """A hook whose one delivery failed for good: nothing listens on the discard port."""
    ctx = await _with_webhook(db, owner)
    await tasks.create_task(db, owner, CreateTask(title="undelivered", project="web"))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, webhook_max_attempts=1, webhook_allow_private_urls=True
    )
    async with webhooks.client_for(settings) as client:
        while await webhooks.deliver_due(db, settings, client):
            pass
    log = await run(db, owner, ListWebhookDeliveries(project="web", webhook_id=ctx["hook"]))
    failed = [d.id for d in log if d.status == "failed"]
    assert failed, log
    return {**ctx, "delivery": failed[0]}


DUE = datetime(2030, 1, 1, tzinfo=UTC)

SCENARIOS: dict[str, Scenario] = {
    "create_project": Scenario(
        lambda db, o, c: projects.create_project(db, o, CreateProject(slug="new", name="N")),
        "created",
        "project",
    ),
    "update_project": Scenario(
        lambda db, o, c: projects.update_project(db, o, "web", UpdateProject(name="W")),
        "updated",
        "project",
    ),
    "delete_project": Scenario(
        lambda db, o, c: projects.delete_project(db, o, "web"), "deleted", "project"
    ),
    "add_member": Scenario(
        lambda db, o, c: projects.add_member(db, o, "web", AddMember(handle="@nina")),
        "member_added",
        "project",
        _with_human,
    ),
    "remove_member": Scenario(
        lambda db, o, c: projects.remove_member(db, o, "web", "@nina"),
        "member_removed",
        "project",
        _with_member,
    ),
    "change_role": Scenario(
        lambda db, o, c: projects.change_role(
            db, o, "web", AddMember(handle="@nina", role=Role.ADMIN)
        ),
        "role_changed",
        "project",
        _with_member,
    ),
    "register_agent": Scenario(
        lambda db, o, c: workers.register_agent(db, o, RegisterAgent(handle="@bot", name="b")),
        "api_key_created",
        "api_key",
    ),
    "create_api_key": Scenario(
        lambda db, o, c: workers.create_api_key(db, o, "@bot", "second"),
        "api_key_created",
        "api_key",
        _with_agent,
    ),
    "revoke_api_key": Scenario(
        lambda db, o, c: workers.revoke_api_key(db, o, "@bot", c["key"]),
        "api_key_revoked",
        "api_key",
        _with_agent,
    ),
    "rotate_api_key": Scenario(
        lambda db, o, c: workers.rotate_api_key(db, o, "@bot", c["key"]),
        "api_key_created",
        "api_key",
        _with_agent,
    ),
    "deactivate_agent": Scenario(
        lambda db, o, c: workers.deactivate_agent(db, o, "@bot"),
        "agent_deactivated",
        "worker",
        _with_agent,
    ),
    "reactivate_agent": Scenario(
        lambda db, o, c: workers.reactivate_agent(db, o, "@bot"),
        "api_key_created",
        "api_key",
        _with_deactivated_agent,
    ),
    "create_task": Scenario(
        lambda db, o, c: tasks.create_task(db, o, CreateTask(title="x", project="web")),
        "created",
        "task",
    ),
    "add_subtasks": Scenario(
        lambda db, o, c: tasks.add_subtasks(db, o, c["task"], [SubtaskSpec(title="s")]),
        "subtask_added",
        "task",
        _task_in("pending"),
    ),
    "edit_task": Scenario(
        lambda db, o, c: tasks.edit_task(db, o, c["task"], EditTask(title="renamed")),
        "updated",
        "task",
        _task_in("pending"),
    ),
    "delete_task": Scenario(
        lambda db, o, c: tasks.delete_task(db, o, c["task"]),
        "deleted",
        "task",
        _task_in("pending"),
    ),
    "start": Scenario(
        lambda db, o, c: workflow.start(db, o, c["task"]), "started", "task", _task_in("pending")
    ),
    "progress": Scenario(
        lambda db, o, c: workflow.progress(db, o, c["task"], 30),
        "progressed",
        "task",
        _task_in("in_progress"),
    ),
    "request_review": Scenario(
        lambda db, o, c: workflow.request_review(db, o, c["task"]),
        "review_requested",
        "task",
        _task_in("in_progress"),
    ),
    "approve": Scenario(
        lambda db, o, c: workflow.approve(db, o, c["task"]),
        "approved",
        "task",
        _task_in("review"),
    ),
    "reject": Scenario(
        lambda db, o, c: workflow.reject(db, o, c["task"], "redo"),
        "rejected",
        "task",
        _task_in("review"),
    ),
    "complete": Scenario(
        lambda db, o, c: workflow.complete(db, o, c["task"]),
        "completed",
        "task",
        _task_in("in_progress"),
    ),
    "assign": Scenario(
        lambda db, o, c: workflow.assign(db, o, c["task"], "@nina"),
        "assigned",
        "task",
        _task_in("pending"),
    ),
    "delegate": Scenario(
        lambda db, o, c: workflow.delegate(db, o, c["task"], "@sarah"),
        "delegated",
        "task",
        _task_in("in_progress"),
    ),
    "block": Scenario(
        lambda db, o, c: workflow.block(db, o, c["task"]), "blocked", "task", _task_in("pending")
    ),
    "unblock": Scenario(
        lambda db, o, c: workflow.unblock(db, o, c["task"]),
        "unblocked",
        "task",
        _task_in("blocked"),
    ),
    "set_due_date": Scenario(
        lambda db, o, c: workflow.set_due_date(db, o, c["task"], DUE),
        "due_date_set",
        "task",
        _task_in("pending"),
    ),
    "reopen_task": Scenario(
        lambda db, o, c: run(db, o, ReopenTask(task_id=c["task"])),
        "review_requested",
        "task",
        _task_in("completed"),
    ),
    "move_task": Scenario(
        lambda db, o, c: run(db, o, MoveTask(task_id=c["task"], status=TaskStatus.BLOCKED)),
        "blocked",
        "task",
        _task_in("pending"),
    ),
    "create_webhook": Scenario(
        lambda db, o, c: run(db, o, CreateWebhook(project="web", url="https://example.com/h")),
        "webhook_created",
        "webhook",
    ),
    "update_webhook": Scenario(
        lambda db, o, c: run(
            db, o, UpdateWebhook(project="web", webhook_id=c["hook"], enabled=False)
        ),
        "webhook_updated",
        "webhook",
        _with_webhook,
    ),
    "delete_webhook": Scenario(
        lambda db, o, c: run(db, o, DeleteWebhook(project="web", webhook_id=c["hook"])),
        "webhook_deleted",
        "webhook",
        _with_webhook,
    ),
    "rotate_webhook_secret": Scenario(
        lambda db, o, c: run(db, o, RotateWebhookSecret(project="web", webhook_id=c["hook"])),
        "webhook_updated",
        "webhook",
        _with_webhook,
    ),
    "redeliver_webhook_delivery": Scenario(
        lambda db, o, c: run(
            db,
            o,
            RedeliverWebhookDelivery(
                project="web", webhook_id=c["hook"], delivery_id=c["delivery"]
            ),
        ),
        "webhook_redelivered",
        "webhook",
        _with_failed_delivery,
    ),
    "claim_next": Scenario(
        lambda db, o, c: workflow.claim_next(db, o), "claimed", "task", _task_in("pending")
    ),
    "change_dependencies": Scenario(
        lambda db, o, c: run(db, o, ChangeDependencies(task_id=c["task"], blocked_by=[c["other"]])),
        "dependency_added",
        "task",
        _two_tasks,
    ),
    "heartbeat": Scenario(
        lambda db, o, c: run(db, o, Heartbeat(task_id=c["task"])),
        "lease_renewed",
        "task",
        _claimed,
    ),
    "add_comment": Scenario(
        lambda db, o, c: run(db, o, AddComment(task_id=c["task"], body="hi @nina")),
        "commented",
        "comment",
        _task_in("pending"),
    ),
    "edit_comment": Scenario(
        lambda db, o, c: run(db, o, EditComment(comment_id=c["comment"], body="edited")),
        "comment_edited",
        "comment",
        _commented,
    ),
}


MUTATING = {name for name, op in REGISTRY.items() if op.mutating}


def test_every_mutating_operation_is_covered():
    assert set(SCENARIOS) == MUTATING, (
        f"missing: {sorted(set(MUTATING) - set(SCENARIOS))}; "
        f"not mutating: {sorted(set(SCENARIOS) - set(MUTATING))}"
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_mutating_operation_writes_its_entry(db, owner, name):
    scenario = SCENARIOS[name]
    ctx = await scenario.setup(db, owner) if scenario.setup else {}
    before = await scalar(db, "SELECT count(*) FROM audit_log")
    log = await tail(db)
    await scenario.call(db, owner, ctx)
    after = await scalar(db, "SELECT count(*) FROM audit_log")
    assert after >= before + 1, f"{name} changed state without an audit entry"
    entries = await log.new()
    last = entries[-1]
    assert (last["action"], last["entity_type"]) == (scenario.action, scenario.entity)
    assert all(e["actor_handle"] == "@sarah" and e["via"] == "core" for e in entries)
    assert REGISTRY[name].mutating

"""The registry of every core operation, by name.

Each surface declares which of its tools, endpoints or commands reaches which operation; a test
compares those declarations with this registry, so an operation added here and forgotten on a
surface fails the suite (principle 2: agents can do everything humans can).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskflow.core.handlers import workflow as workflow_ops
from taskflow.core.services import history, projects, task_queries, tasks, workers, workflow

OPERATIONS: dict[str, Callable[..., Any]] = {
    # projects and members
    "create_project": projects.create_project,
    "get_project": projects.get_project,
    "list_projects": projects.list_projects,
    "update_project": projects.update_project,
    "delete_project": projects.delete_project,
    "list_members": projects.list_members,
    "add_member": projects.add_member,
    "remove_member": projects.remove_member,
    "change_role": projects.change_role,
    # workers and agent keys
    "whoami": workers.whoami,
    "list_workers": workers.list_workers,
    "get_worker": workers.get_worker,
    "register_agent": workers.register_agent,
    "create_api_key": workers.create_api_key,
    "list_api_keys": workers.list_api_keys,
    "revoke_api_key": workers.revoke_api_key,
    "rotate_api_key": workers.rotate_api_key,
    "deactivate_agent": workers.deactivate_agent,
    "reactivate_agent": workers.reactivate_agent,
    # tasks
    "create_task": tasks.create_task,
    "add_subtasks": tasks.add_subtasks,
    "get_task": task_queries.get_task,
    "list_tasks": task_queries.list_tasks,
    "edit_task": tasks.edit_task,
    "delete_task": tasks.delete_task,
    # workflow
    "start": workflow.start,
    "progress": workflow.progress,
    "request_review": workflow.request_review,
    "approve": workflow.approve,
    "reject": workflow.reject,
    "complete": workflow.complete,
    "assign": workflow.assign,
    "delegate": workflow.delegate,
    "block": workflow.block,
    "unblock": workflow.unblock,
    "set_due_date": workflow.set_due_date,
    "claim_next": workflow.claim_next,
    "reopen_task": workflow_ops.reopen_task,
    # audit
    "list_audit": history.list_audit,
    "get_audit_entry": history.get_entry,
    "verify_audit": history.verify_log,
}

# Operations that change state: each must write at least one audit entry.
MUTATING = frozenset(OPERATIONS) - {
    "get_project",
    "list_projects",
    "list_members",
    "whoami",
    "list_workers",
    "get_worker",
    "list_api_keys",
    "get_task",
    "list_tasks",
    "list_audit",
    "get_audit_entry",
    "verify_audit",
}

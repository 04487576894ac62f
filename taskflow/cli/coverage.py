"""Which `taskflow` command reaches each core operation (checked against OPERATIONS by a test)."""

from __future__ import annotations

COVERAGE: dict[str, str] = {
    # projects and members
    "create_project": "project add",
    "get_project": "project show",
    "list_projects": "project list",
    "update_project": "project edit",
    "delete_project": "project delete",
    "list_members": "member list",
    "add_member": "member add",
    "remove_member": "member remove",
    "change_role": "member role",
    # workers and agent keys
    "whoami": "whoami",
    "list_workers": "worker list",
    "get_worker": "worker show",
    "register_agent": "agent register",
    "create_api_key": "agent new-key",
    "list_api_keys": "agent keys",
    "revoke_api_key": "agent revoke",
    "rotate_api_key": "agent rotate",
    "deactivate_agent": "agent deactivate",
    "reactivate_agent": "agent reactivate",
    # tasks
    "create_task": "add",
    "add_subtasks": "subtask",
    "get_task": "show",
    "list_tasks": "list",
    "edit_task": "edit",
    "delete_task": "delete",
    # workflow
    "start": "start",
    "progress": "progress",
    "request_review": "review",
    "approve": "approve",
    "reject": "reject",
    "complete": "complete",
    "assign": "assign",
    "delegate": "delegate",
    "block": "block",
    "unblock": "unblock",
    "set_due_date": "due",
    "claim_next": "claim",
    "reopen_task": "reopen",
    # audit
    "list_audit": "audit list",
    "get_audit_entry": "audit show",
    "verify_audit": "audit verify",
}

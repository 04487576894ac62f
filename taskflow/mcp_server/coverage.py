"""Which MCP tool reaches each core operation (principle 2: agents can do everything).

A test asserts that these keys are exactly `taskflow.core.operations.OPERATIONS` and that every
tool named here is in `tools/list`. Grouped tools say which `action` reaches the operation in
`ACTIONS`; other parameters that select an operation are noted in the tool's description.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
    # projects and members
    "create_project": "manage_project",
    "get_project": "list_projects",  # list_projects(project=...)
    "list_projects": "list_projects",
    "update_project": "manage_project",
    "delete_project": "manage_project",
    "list_members": "list_projects",  # list_projects(project=...) includes members
    "add_member": "manage_project",
    "remove_member": "manage_project",
    "change_role": "manage_project",
    # workers and agent keys
    "whoami": "whoami",
    "list_workers": "list_workers",
    "get_worker": "list_workers",  # list_workers(handle=...)
    "register_agent": "manage_agents",
    "create_api_key": "manage_agents",
    "list_api_keys": "manage_agents",
    "revoke_api_key": "manage_agents",
    "rotate_api_key": "manage_agents",
    "deactivate_agent": "manage_agents",
    "reactivate_agent": "manage_agents",
    # tasks
    "create_task": "create_task",
    "add_subtasks": "manage_task",
    "get_task": "get_task",
    "list_tasks": "list_tasks",
    "edit_task": "update_task",
    "delete_task": "manage_task",
    # workflow
    "start": "start_task",
    "progress": "update_progress",
    "request_review": "request_review",
    "approve": "approve_task",
    "reject": "reject_task",
    "complete": "complete_task",
    "assign": "assign_task",
    "delegate": "delegate_task",
    "block": "block_task",
    "unblock": "unblock_task",
    "set_due_date": "manage_task",
    "claim_next": "claim_next_task",
    # audit
    "list_audit": "get_audit_trail",
    "get_audit_entry": "get_audit_trail",  # get_audit_trail(entry_id=...)
    "verify_audit": "verify_audit",
}

# The `action` value of a grouped tool that performs each operation.
ACTIONS: dict[str, str] = {
    "create_project": "create",
    "update_project": "update",
    "delete_project": "delete",
    "add_member": "add_member",
    "remove_member": "remove_member",
    "change_role": "change_role",
    "register_agent": "register",
    "create_api_key": "create_key",
    "list_api_keys": "list_keys",
    "revoke_api_key": "revoke_key",
    "rotate_api_key": "rotate_key",
    "deactivate_agent": "deactivate",
    "reactivate_agent": "reactivate",
    "add_subtasks": "add_subtasks",
    "set_due_date": "set_due_date",
    "delete_task": "delete",
}

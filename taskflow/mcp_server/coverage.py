"""Which hand-written MCP tool reaches each core operation not yet on the kernel (principle 2:
agents can do everything). Kernel operations are tools generated from their declarations.

A test asserts that these keys and the declared tools are exactly the core's OPERATIONS, and that
every tool named here is in `tools/list`. Grouped tools say which `action` reaches the operation in
`ACTIONS`; other parameters that select an operation are noted in the tool's description.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
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
}

# The `action` value of a grouped tool that performs each operation.
ACTIONS: dict[str, str] = {
    "add_subtasks": "add_subtasks",
    "set_due_date": "set_due_date",
    "delete_task": "delete",
}

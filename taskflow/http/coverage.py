"""Which hand-written endpoint reaches each core operation not yet on the kernel.

Operations on the kernel are routed from their declarations, which name their own route. A test
checks that these keys and the declared operations together are exactly the core's OPERATIONS,
and that every endpoint is in the app's route table.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
    # tasks
    "create_task": "POST /api/projects/{project}/tasks",
    "add_subtasks": "POST /api/tasks/{task_id}/subtasks",
    "get_task": "GET /api/tasks/{task_id}",
    "list_tasks": "GET /api/projects/{project}/tasks",
    "edit_task": "PUT /api/tasks/{task_id}",
    "delete_task": "DELETE /api/tasks/{task_id}",
    # workflow
    "start": "POST /api/tasks/{task_id}/start",
    "progress": "PATCH /api/tasks/{task_id}/progress",
    "request_review": "POST /api/tasks/{task_id}/review",
    "approve": "POST /api/tasks/{task_id}/approve",
    "reject": "POST /api/tasks/{task_id}/reject",
    "complete": "POST /api/tasks/{task_id}/complete",
    "assign": "PATCH /api/tasks/{task_id}/assign",
    "delegate": "POST /api/tasks/{task_id}/delegate",
    "block": "POST /api/tasks/{task_id}/block",
    "unblock": "POST /api/tasks/{task_id}/unblock",
    "set_due_date": "PATCH /api/tasks/{task_id}/due",
    "claim_next": "POST /api/projects/{project}/claim",
}

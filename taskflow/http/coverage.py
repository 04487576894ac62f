"""Which hand-written endpoint reaches each core operation not yet on the kernel.

Operations on the kernel are routed from their declarations, which name their own route. A test
checks that these keys and the declared operations together are exactly the core's OPERATIONS,
and that every endpoint is in the app's route table.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
    # workers and agent keys
    "whoami": "GET /api/me",
    "list_workers": "GET /api/workers",
    "get_worker": "GET /api/workers/{handle}",
    "register_agent": "POST /api/workers/agents",
    "create_api_key": "POST /api/workers/{handle}/keys",
    "list_api_keys": "GET /api/workers/{handle}/keys",
    "revoke_api_key": "POST /api/workers/{handle}/keys/{key_id}/revoke",
    "rotate_api_key": "POST /api/workers/{handle}/keys/{key_id}/rotate",
    "deactivate_agent": "POST /api/workers/{handle}/deactivate",
    "reactivate_agent": "POST /api/workers/{handle}/reactivate",
    # tasks (the rest are declared; see routes/task_aliases.py)
    "add_subtasks": "POST /api/tasks/{task_id}/subtasks",
    # audit
    "list_audit": "GET /api/projects/{project}/audit",
    "get_audit_entry": "GET /api/audit/{entry_id}",
    "verify_audit": "GET /api/audit/verify",
}

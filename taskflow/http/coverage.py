"""Which hand-written endpoint reaches each core operation not yet on the kernel.

Operations on the kernel are routed from their declarations, which name their own route. A test
checks that these keys and the declared operations together are exactly the core's OPERATIONS,
and that every endpoint is in the app's route table.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
    # tasks (the rest are declared; see routes/task_aliases.py)
    "add_subtasks": "POST /api/tasks/{task_id}/subtasks",
}

"""Which hand-written MCP tool reaches each core operation not yet on the kernel (principle 2:
agents can do everything). Kernel operations are tools generated from their declarations.

A test asserts that these keys and the declared tools are exactly the core's OPERATIONS, and that
every tool named here is in `tools/list`. Grouped tools say which `action` reaches the operation in
`ACTIONS`; other parameters that select an operation are noted in the tool's description.
"""

from __future__ import annotations

COVERAGE: dict[str, str] = {
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
    # audit
    "list_audit": "get_audit_trail",
    "get_audit_entry": "get_audit_trail",  # get_audit_trail(entry_id=...)
    "verify_audit": "verify_audit",
}

# The `action` value of a grouped tool that performs each operation.
ACTIONS: dict[str, str] = {
    "register_agent": "register",
    "create_api_key": "create_key",
    "list_api_keys": "list_keys",
    "revoke_api_key": "revoke_key",
    "rotate_api_key": "rotate_key",
    "deactivate_agent": "deactivate",
    "reactivate_agent": "reactivate",
}

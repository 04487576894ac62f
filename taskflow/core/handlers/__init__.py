"""Handlers per aggregate, each declared once with its command (`taskflow.core.declarations`).

Importing a handler module registers its operations. `load_all` imports every one; the
registry calls it when first read, so a surface that lists operations sees them all, while a
process that runs one command (`taskflow list`) loads only that command's module.
"""

from __future__ import annotations

import importlib

MODULES = (
    "audit",
    "comments",
    "coordination",
    "feed",
    "projects",
    "task_list",
    "tasks",
    "webhooks",
    "workers",
    "workflow",
)
"""Every module that declares operations (`tests/core/test_kernel.py` checks none is missed)."""


def load_all() -> None:
    """Import every handler module, registering every operation."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")

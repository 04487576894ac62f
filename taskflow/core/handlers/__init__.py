"""Handlers per aggregate, each declared once with its command (`taskflow.core.declarations`).

Importing this package registers every operation moved onto the kernel so far.
"""

from taskflow.core.handlers import (
    audit,
    comments,
    coordination,
    feed,
    projects,
    tasks,
    webhooks,
    workers,
    workflow,
)

__all__ = [
    "audit",
    "comments",
    "coordination",
    "feed",
    "projects",
    "tasks",
    "webhooks",
    "workers",
    "workflow",
]

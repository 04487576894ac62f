"""Handlers per aggregate, each declared once with its command (`taskflow.core.declarations`).

Importing this package registers every operation moved onto the kernel so far.
"""

from taskflow.core.handlers import audit, comments, feed, projects, tasks, workers, workflow

__all__ = ["audit", "comments", "feed", "projects", "tasks", "workers", "workflow"]

"""Request bodies for arguments the core takes as plain parameters rather than as a model.

The core's services take a workflow verb's arguments (a reason, a percent, a handle) directly;
REST needs a JSON object for each. These wrap exactly those parameters with the core's own
annotated types (Handle, Percent, DueDate, ...), so limits and messages match the other surfaces.
"""

from __future__ import annotations

from pydantic import Field

from taskflow.core.domain import TaskStatus
from taskflow.core.schemas import DueDate, Handle, Model, Percent, Tag

Note = str | None


class StatusChange(Model):
    """Move a task to a status; the matching workflow verb runs (see the endpoint)."""

    status: TaskStatus


class ProgressUpdate(Model):
    progress_percent: Percent
    note: Note = Field(default=None, max_length=2000)


class Assignment(Model):
    assignee: Handle | None = Field(description="The new assignee's handle; null unassigns")


class DueDateChange(Model):
    due_date: DueDate = Field(default=None, description="New due date; null (or omitted) clears")


class Approval(Model):
    note: Note = Field(default=None, max_length=2000)


class Rejection(Model):
    reason: str = Field(min_length=1, max_length=2000, description="What the assignee must fix")


class Delegation(Model):
    to: Handle


class Blocking(Model):
    reason: Note = Field(default=None, max_length=2000)


class ClaimRequest(Model):
    tags: list[Tag] = Field(
        default_factory=list, max_length=50, description="Only tasks having one of these tags"
    )

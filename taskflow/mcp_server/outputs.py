"""Result envelopes for tools that answer with more than one core model.

The records inside are the core's own output models (`taskflow.core.schemas`); these classes
only give list answers and grouped tools one object shape, as `structuredContent` requires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from taskflow.core.domain import Priority, TaskStatus
from taskflow.core.schemas import Page, TaskDetail, TaskOut


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskState(Envelope):
    """Where a task stands after a workflow move: what the agent needs for its next call.

    A projection of the core's `TaskOut` (get_task has the rest), so the workflow tools do not
    each repeat the full task schema in `tools/list`, and answers stay small.
    """

    id: int
    title: str
    status: TaskStatus
    progress_percent: int
    assignee: str | None = None
    version: int

    @classmethod
    def of(cls, task: TaskOut) -> Self:
        # Read the fields off the core model directly: no dump to a dict and back per task.
        return cls.model_validate(task, from_attributes=True)


class TaskSummary(TaskState):
    """A task in a listing: no description or timestamps (get_task has them), so a page of
    fifty tasks stays small whatever their descriptions hold."""

    project: str
    parent_id: int | None = None
    priority: Priority
    tags: list[str] = Field(default_factory=list)
    due_date: datetime | None = None


class TaskPage(Envelope):
    items: list[TaskSummary]
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page")

    @classmethod
    def of(cls, page: Page[TaskOut]) -> TaskPage:
        return cls(items=[TaskSummary.of(t) for t in page.items], next_cursor=page.next_cursor)


class TaskResult(Envelope):
    action: str
    task: TaskState | None = None
    subtasks: list[TaskState] = Field(default_factory=list)
    deleted_ids: list[int] = Field(default_factory=list)


class CreatedTasks(Envelope):
    """The new task and its subtasks, in creation order (get_task shows the full records)."""

    task: TaskState
    subtasks: list[TaskState] = Field(default_factory=list)

    @classmethod
    def of(cls, detail: TaskDetail) -> CreatedTasks:
        return cls(
            task=TaskState.of(detail.task), subtasks=[TaskState.of(n) for n in detail.subtree]
        )

"""Parents finish last, named reviewers, recurrence that recurs (issue 13, second half).

- `projects.allow_open_subtasks` (default false): whether a task may be completed or approved
  while some of its descendants are open; `projects.recur_subtasks` (default true): whether a
  recurring task's next occurrence copies its subtasks.
- `tasks.reviewer_id`: the member `request_review` named, while the task is in review.
- `tasks.series_id`: on the later occurrences of a recurring task, the id of the series' first
  task (no foreign key: the series keeps its name when its first task is deleted). Indexed with
  the due date: completing an occurrence checks the next one is not there already.
Existing rows keep their values: nothing is reviewed by name, nothing is in a series yet, and
Phase 1's free-text recurrences stay as they were (shown as legacy).

Revision ID: 0006_finish_review_recur
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_finish_review_recur"
down_revision: str | None = "0005_coordination_graph"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column("allow_open_subtasks", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column(
        "projects",
        sa.Column("recur_subtasks", sa.Boolean(), server_default="true", nullable=False),
    )
    op.add_column("tasks", sa.Column("reviewer_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_tasks_reviewer_id_workers",
        "tasks",
        "workers",
        ["reviewer_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("tasks", sa.Column("series_id", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_tasks_series",
        "tasks",
        ["series_id", "due_date"],
        postgresql_where=sa.text("series_id IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_reviewer",
        "tasks",
        ["reviewer_id", "id"],
        postgresql_where=sa.text("reviewer_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_reviewer", table_name="tasks")
    op.drop_index("ix_tasks_series", table_name="tasks")
    op.drop_column("tasks", "series_id")
    op.drop_constraint("fk_tasks_reviewer_id_workers", "tasks", type_="foreignkey")
    op.drop_column("tasks", "reviewer_id")
    op.drop_column("projects", "recur_subtasks")
    op.drop_column("projects", "allow_open_subtasks")

"""Sort by priority through an index: a stored rank column.

Sorting by the text column orders critical < high < low < medium; a CASE in the query orders
correctly but no index serves it, so every page scanned the whole project (measured 360-460 ms
a page at 1M tasks). A stored generated rank with its own index keeps pages flat and fast.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RANK = "CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
CLAIMABLE = sa.text("status = 'pending' AND assignee_id IS NULL")


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("priority_rank", sa.SmallInteger(), sa.Computed(RANK, persisted=True)),
    )
    op.drop_index("ix_tasks_project_priority", table_name="tasks")
    op.create_index(
        "ix_tasks_project_priority_rank", "tasks", ["project_id", "priority_rank", "id"]
    )
    op.drop_index("ix_tasks_claimable", table_name="tasks")
    op.create_index(
        "ix_tasks_claimable",
        "tasks",
        ["priority_rank", "due_date", "id"],
        postgresql_where=CLAIMABLE,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_claimable", table_name="tasks")
    op.create_index("ix_tasks_claimable", "tasks", ["project_id", "id"], postgresql_where=CLAIMABLE)
    op.drop_index("ix_tasks_project_priority_rank", table_name="tasks")
    op.create_index("ix_tasks_project_priority", "tasks", ["project_id", "priority", "id"])
    op.drop_column("tasks", "priority_rank")

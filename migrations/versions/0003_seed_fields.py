"""Work timestamps on tasks and deactivation of workers.

`started_at` is set when work on a task first starts and kept through review; `completed_at` is
set on completion and cleared when the task is reopened (the seed frontend's fields). A worker
with `deactivated_at` set keeps its history but can no longer sign in, claim or be assigned.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("workers", sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "deactivated_at")
    op.drop_column("tasks", "completed_at")
    op.drop_column("tasks", "started_at")

"""Coordination: task dependencies, claim leases and required capabilities.

- `task_dependencies (task_id, blocker_id)`: task_id is blocked by blocker_id (both cascade on
  delete); the primary key serves "blockers of a task", `ix_task_dependencies_blocker` the
  reverse walk.
- `tasks.lease_expires_at` / `tasks.lease_seconds`: a claim's lease and its length (renewals
  extend by the same length); the partial index holds only leased tasks, so "has any lease run
  out?" is one short index scan.
- `tasks.required_capabilities`: what a worker must be able to do to be offered the task.
- `projects.lease_seconds`: a project's default lease (15 minutes).

Revision ID: 0005_coordination_graph
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_coordination_graph"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_dependencies",
        sa.Column(
            "task_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "tasks.id", ondelete="CASCADE", name=op.f("fk_task_dependencies_task_id_tasks")
            ),
            nullable=False,
        ),
        sa.Column(
            "blocker_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "tasks.id", ondelete="CASCADE", name=op.f("fk_task_dependencies_blocker_id_tasks")
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("task_id <> blocker_id", name=op.f("ck_task_dependencies_not_self")),
        sa.PrimaryKeyConstraint("task_id", "blocker_id", name=op.f("pk_task_dependencies")),
    )
    op.create_index(
        op.f("ix_task_dependencies_blocker"), "task_dependencies", ["blocker_id", "task_id"]
    )
    op.add_column("tasks", sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.add_column("tasks", sa.Column("lease_seconds", sa.Integer()))
    op.add_column(
        "tasks",
        sa.Column(
            "required_capabilities",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.create_index(
        op.f("ix_tasks_lease_expires_at"),
        "tasks",
        ["lease_expires_at"],
        postgresql_where=sa.text("lease_expires_at IS NOT NULL"),
    )
    op.add_column(
        "projects",
        sa.Column("lease_seconds", sa.Integer(), server_default="900", nullable=False),
    )
    op.create_check_constraint(op.f("ck_projects_lease_seconds"), "projects", "lease_seconds > 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_projects_lease_seconds"), "projects")
    op.drop_column("projects", "lease_seconds")
    op.drop_index(op.f("ix_tasks_lease_expires_at"), table_name="tasks")
    op.drop_column("tasks", "required_capabilities")
    op.drop_column("tasks", "lease_seconds")
    op.drop_column("tasks", "lease_expires_at")
    op.drop_index(op.f("ix_task_dependencies_blocker"), table_name="task_dependencies")
    op.drop_table("task_dependencies")

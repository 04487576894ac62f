"""Children of a task in id order from one index: `tasks (parent_id, id)`.

Every step of a subtree walk (reading a page, rolling progress up, deleting a chain) asks for
the children of some task, and the paged read asks for them in id order after a given id
(`parent_id = p AND id > c ORDER BY id LIMIT n`). The composite index answers all of those with
one range scan, sorted, and serves the foreign key's cascade (`parent_id = p`) as the
single-column index it replaces did. `ANALYZE` afterwards: plans must not wait for autovacuum.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_parent_id_id", "tasks", ["parent_id", "id"], unique=False)
    op.drop_index("ix_tasks_parent_id", table_name="tasks")
    op.execute("ANALYZE tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_parent_id", "tasks", ["parent_id"], unique=False)
    op.drop_index("ix_tasks_parent_id_id", table_name="tasks")

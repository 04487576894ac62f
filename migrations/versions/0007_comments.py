"""Comments on tasks, and the audit log as a live event feed.

- `comments`: append-only revisions (an edit is a new row with the same `comment_id` and the
  next `revision`; the old text stays). `mentions` holds the worker ids named by `@handle`.
  A trigger refuses UPDATE; rows go only with their task (ON DELETE CASCADE).
- `audit_log.xact`: the id of the transaction that wrote the entry (`pg_current_xact_id()`).
  The feed reads entries in (xact, id) order and only below the oldest transaction still
  running, so an entry committed late never appears behind a reader's position
  (`taskflow.core.feed`). Entries written before this revision read the migration's own
  transaction id (a stable default, stored once: no table rewrite).
- No NOTIFY trigger: PostgreSQL serializes the commits of notifying transactions, which halved
  the hot create path; the feed's announcer notifies instead (`taskflow.core.feed.Hub`).

Revision ID: 0007_comments
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_comments"
down_revision: str | None = "0006_finish_review_recur"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENTS_REFUSE_UPDATE = """
CREATE FUNCTION comments_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'comments are append-only: an edit is a new revision'
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def upgrade() -> None:
    op.execute(
        "ALTER TABLE audit_log ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id()"
    )
    op.create_index("ix_audit_log_xact_id", "audit_log", ["xact", "id"], unique=False)
    op.create_table(
        "comments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "mentions",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("char_length(body) BETWEEN 1 AND 20000", name=op.f("ck_comments_body")),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_comments_revision")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_comments_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_comments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["workers.id"], name=op.f("fk_comments_author_id_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
        sa.UniqueConstraint("comment_id", "revision", name="uq_comments_comment_revision"),
    )
    op.create_index("ix_comments_task_id", "comments", ["task_id", "comment_id", "revision"])
    op.create_index("ix_comments_mentions", "comments", ["mentions"], postgresql_using="gin")
    op.execute(COMMENTS_REFUSE_UPDATE)
    op.execute(
        "CREATE TRIGGER comments_no_update BEFORE UPDATE ON comments "
        "FOR EACH ROW EXECUTE FUNCTION comments_refuse_update()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS comments_no_update ON comments")
    op.execute("DROP FUNCTION IF EXISTS comments_refuse_update()")
    op.drop_index("ix_comments_mentions", table_name="comments")
    op.drop_index("ix_comments_task_id", table_name="comments")
    op.drop_table("comments")
    op.drop_index("ix_audit_log_xact_id", table_name="audit_log")
    op.execute("ALTER TABLE audit_log DROP COLUMN xact")

"""Least privilege: the app's role `taskflow_app`, and the shared rate-limit buckets.

- `rate_buckets` (UNLOGGED: no WAL per sync; a database crash empties it, which only refills
  every bucket): one row per worker and kind (write/read), the shared token bucket each
  process syncs with (`taskflow.core.limits`).
- `taskflow_app`, a role without LOGIN that the application's login role belongs to (the
  embedded database logs in as it directly): SELECT, INSERT, UPDATE and DELETE on the tables,
  but on `audit_log` only SELECT and INSERT and on `audit_heads` no DELETE, and the owner's
  rights on nothing, so it cannot disable the audit trigger, rewrite or delete history.
  Tables later migrations create get the same rights by default (`ALTER DEFAULT PRIVILEGES`).
- `audit_log_share_lock()`: the digest's `LOCK TABLE audit_log IN SHARE MODE` needs UPDATE,
  DELETE or TRUNCATE on the table, which the app must not have; this function (SECURITY
  DEFINER, run with the owner's rights) takes that one lock for the caller's transaction.

A migrating role that may not create roles (a managed server's plain owner) skips the role
with a NOTICE; `docs/deploy.md` says how to make it by hand. The role is cluster-wide, so the
downgrade revokes its rights here but keeps it (other databases may use it).

Revision ID: 0010_limits_role
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_limits_role"
down_revision: str | None = "0009_key_scopes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "taskflow_app"

_LOCK_FUNCTION = """
CREATE FUNCTION audit_log_share_lock() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE audit_log IN SHARE MODE;
END $$
"""

_GRANTS = f"""
DO $grants$
DECLARE
    schema text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE {APP_ROLE} NOLOGIN;
        ELSE
            RAISE NOTICE 'role {APP_ROLE} not created: % may not create roles (see docs/deploy.md)',
                current_user;
            RETURN;
        END IF;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}', schema);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO {APP_ROLE}', schema
    );
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {APP_ROLE}', schema);
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
        'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}', schema
    );
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}',
        schema
    );
    REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM {APP_ROLE};
    REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_heads FROM {APP_ROLE};
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {APP_ROLE};
    GRANT EXECUTE ON FUNCTION audit_log_share_lock() TO {APP_ROLE};
END $grants$
"""

_REVOKE = f"""
DO $revoke$
DECLARE
    schema text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        RETURN;
    END IF;
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM {APP_ROLE}', schema
    );
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM {APP_ROLE}', schema
    );
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {APP_ROLE}', schema);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM {APP_ROLE}', schema);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM {APP_ROLE}', schema);
END $revoke$
"""


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tokens", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("capacity", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("rate", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("spent", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('write', 'read')", name=op.f("ck_rate_buckets_kind")),
        sa.PrimaryKeyConstraint("worker_id", "kind", name=op.f("pk_rate_buckets")),
        prefixes=["UNLOGGED"],
    )
    op.execute(_LOCK_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION audit_log_share_lock() FROM PUBLIC")
    op.execute(_GRANTS)


def downgrade() -> None:
    op.execute(_REVOKE)
    op.execute("DROP FUNCTION IF EXISTS audit_log_share_lock()")
    op.drop_table("rate_buckets")

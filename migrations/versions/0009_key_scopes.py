"""API key scopes, and what an audit entry says about the credential and the client's request id.

- `api_keys.read_only`: the key may only read (every mutating operation is refused);
- `api_keys.project_ids`: NULL for every project the agent is a member of, else only these
  (other projects look like projects that do not exist);
- `api_keys.manage_agents`: the key may register agents and issue keys. Keys that exist keep
  what they could do (true); a new key gets it only when asked for (the column's default is
  false, as the model's is).
- `audit_log.actor_key`: the display prefix of the API key a change was made with;
- `audit_log.client_request_id`: the `X-Request-ID` the client sent, as sent, next to the
  server's own `request_id`. Both are hashed into the entry when either is set (see
  `audit.payload`), so entries written before this migration verify unchanged.

Revision ID: 0009_key_scopes
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0009_key_scopes"
down_revision: str | None = "0008_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("read_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("api_keys", sa.Column("project_ids", ARRAY(sa.BigInteger()), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column("manage_agents", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )
    op.alter_column("api_keys", "manage_agents", server_default=sa.text("false"))
    op.add_column("audit_log", sa.Column("actor_key", sa.String(32), nullable=True))
    op.add_column("audit_log", sa.Column("client_request_id", sa.String(100), nullable=True))
    op.create_index("ix_workers_created_by_id", "workers", ["created_by_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workers_created_by_id", table_name="workers")
    op.drop_column("audit_log", "client_request_id")
    op.drop_column("audit_log", "actor_key")
    op.drop_column("api_keys", "manage_agents")
    op.drop_column("api_keys", "project_ids")
    op.drop_column("api_keys", "read_only")

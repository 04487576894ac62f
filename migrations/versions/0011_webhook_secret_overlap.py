"""A rotated webhook secret keeps signing beside the new one for a while.

- `webhooks.previous_secret`: the secret a rotation replaced, NULL when there is none;
- `webhooks.previous_secret_expires_at`: until when deliveries carry its signature too (the
  `webhook-signature` header lists both, as Standard Webhooks allows), so a receiver can switch
  to the new secret at its own pace without failing a delivery.

Revision ID: 0011_webhook_secret_overlap
Revises: 0010_limits_role
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_webhook_secret_overlap"
down_revision: str | None = "0010_limits_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("previous_secret", sa.String(100), nullable=True))
    op.add_column(
        "webhooks",
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("webhooks", "previous_secret_expires_at")
    op.drop_column("webhooks", "previous_secret")

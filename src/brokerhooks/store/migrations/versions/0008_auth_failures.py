"""Failed authentications counted across processes.

Each process kept its own count of failed keys and sign-ins, so a guesser
spreading tries over several processes got as many tries per process.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("scope", sa.String(20), primary_key=True),
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_started", UTCDateTime(), nullable=False),
        sa.Column("blocked_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_auth_failures_updated_at", "auth_failures", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_failures_updated_at", table_name="auth_failures")
    op.drop_table("auth_failures")

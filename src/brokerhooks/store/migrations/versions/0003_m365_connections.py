"""Microsoft 365 connections: where a broker's Graph credentials and tokens live.

Actions in To Do, Outlook and OneDrive need, per broker, an app registration,
msal's token cache (refresh tokens) and the sign-in in progress between the
sign-in link and its callback, all encrypted at rest.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "m365_connections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("authority_url", sa.String(300), nullable=False),
        sa.Column("graph_url", sa.String(300), nullable=False),
        sa.Column("mailbox", sa.String(320), nullable=True),
        sa.Column("token_cache_encrypted", sa.Text(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("auth_flow_encrypted", sa.Text(), nullable=True),
        sa.Column("auth_flow_state", sa.String(100), nullable=True),
        sa.Column("auth_flow_started_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broker_id"],
            ["brokers.id"],
            name="fk_m365_connections_broker_id_brokers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_m365_connections"),
    )
    op.create_index(
        "uq_m365_connections_broker_id_name",
        "m365_connections",
        ["broker_id", "name"],
        unique=True,
    )
    op.create_index(
        "uq_m365_connections_auth_flow_state",
        "m365_connections",
        ["auth_flow_state"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("m365_connections")

"""Brokers, events and deliveries: what durable ingest needs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brokers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("salestrekker_url", sa.String(300), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("api_key_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("key_rotated_at", UTCDateTime(), nullable=True),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_brokers"),
    )
    op.create_index(
        "uq_brokers_name_active",
        "brokers",
        ["name"],
        unique=True,
        sqlite_where=sa.text("removed_at IS NULL"),
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_index("uq_brokers_api_key_hash", "brokers", ["api_key_hash"], unique=True)

    op.create_table(
        "events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("entity_id", sa.String(36), nullable=False),
        sa.Column("deal_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["broker_id"], ["brokers.id"], name="fk_events_broker_id_brokers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_broker_id_id", "events", ["broker_id", "id"])
    op.create_index("ix_events_status_id", "events", ["status", "id"])
    op.create_index("ix_events_deal_id", "events", ["deal_id"])
    op.create_index("ix_events_entity_id", "events", ["entity_id"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("broker_id", sa.String(36), nullable=True),
        sa.Column("body_size", sa.BigInteger(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])
    op.create_index(
        "ix_deliveries_broker_id_received_at",
        "deliveries",
        ["broker_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("events")
    op.drop_table("brokers")

"""The job queue, processing attempts, snapshots and SalesTrekker tokens.

Events gain the outcome of their processing: a reason for people when they
need attention, the event they were coalesced into, their snapshot and the
changes since the previous one.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("coalesced_into", sa.String(36), nullable=True))
        batch.add_column(sa.Column("snapshot_id", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("previous_snapshot_id", sa.BigInteger(), nullable=True)
        )
        batch.add_column(sa.Column("changes", sa.Text(), nullable=True))
        batch.add_column(sa.Column("processed_at", UTCDateTime(), nullable=True))

    op.create_table(
        "jobs",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("ordering_key", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_status_run_after", "jobs", ["status", "run_after"])
    op.create_index("ix_jobs_ordering_key_id", "jobs", ["ordering_key", "id"])
    op.create_index("ix_jobs_event_id", "jobs", ["event_id"])

    op.create_table(
        "attempts",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(100), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
    )
    op.create_index("ix_attempts_event_id_id", "attempts", ["event_id", "id"])

    op.create_table(
        "snapshots",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index(
        "ix_snapshots_broker_id_subject_entity_id",
        "snapshots",
        ["broker_id", "subject", "entity_id", "id"],
    )
    op.create_index("ix_snapshots_event_id", "snapshots", ["event_id"])

    op.create_table(
        "salestrekker_tokens",
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("obtained_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("broker_id", name="pk_salestrekker_tokens"),
    )


def downgrade() -> None:
    op.drop_table("salestrekker_tokens")
    op.drop_table("snapshots")
    op.drop_table("attempts")
    op.drop_table("jobs")
    with op.batch_alter_table("events") as batch:
        for column in (
            "processed_at",
            "changes",
            "previous_snapshot_id",
            "snapshot_id",
            "coalesced_into",
            "status_reason",
        ):
            batch.drop_column(column)

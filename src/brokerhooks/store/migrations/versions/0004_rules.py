"""Rules, their runs and the idempotency ledger of their actions.

Jobs gain ``ref``: an action job names its ledger entry there.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("ref", sa.String(250), nullable=True))

    op.create_table(
        "rules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broker_id"],
            ["brokers.id"],
            name="fk_rules_broker_id_brokers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rules"),
    )
    op.create_index(
        "uq_rules_broker_id_rule_id", "rules", ["broker_id", "rule_id"], unique=True
    )

    op.create_table(
        "runs",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trace", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index(
        "ix_runs_broker_id_rule_id_status_id",
        "runs",
        ["broker_id", "rule_id", "status", "id"],
    )
    op.create_index("ix_runs_event_id", "runs", ["event_id"])

    op.create_table(
        "actions",
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("deal_id", sa.String(36), nullable=True),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("step_id", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("connection", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("remote_id", sa.String(500), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_actions"),
    )
    op.create_index("ix_actions_run_id", "actions", ["run_id"])
    op.create_index(
        "ix_actions_broker_id_deal_id_rule_id_step_id",
        "actions",
        ["broker_id", "deal_id", "rule_id", "step_id"],
    )
    op.create_index("ix_actions_status", "actions", ["status"])


def downgrade() -> None:
    op.drop_table("actions")
    op.drop_table("runs")
    op.drop_table("rules")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("ref")

"""Echoes: what brokerhooks made, found again when it comes back as an event.

``events.caused_by`` keeps, for an event that one of brokerhooks' own
actions caused, that action and the rules of the chain that led to it. The
ledger's ``remote_id`` gets an index, so that a note, task or calendar
event coming back can be looked up by its id.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("caused_by", sa.Text(), nullable=True))
    op.create_index(
        "ix_actions_broker_id_remote_id", "actions", ["broker_id", "remote_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_actions_broker_id_remote_id", table_name="actions")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("caused_by")

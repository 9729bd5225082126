"""Indexes for a long queue and a large store.

A claim looks for the first due jobs of one status in id order. With an
index on (status, run_after) the database read every due job and sorted
them, for every claim, which made draining a long queue slow; an index on
(status, id) reads them in order, and only as many as it takes. The old
index served nothing else, so it goes.

Coalescing an event also marks the events already folded into it, found by
``coalesced_into``; without an index that read the whole events table. Few
events are coalesced, so the index leaves the others out.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.drop_index("ix_jobs_status_run_after", table_name="jobs")
    op.create_index(
        "ix_events_coalesced_into",
        "events",
        ["coalesced_into"],
        sqlite_where=sa.text("coalesced_into IS NOT NULL"),
        postgresql_where=sa.text("coalesced_into IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_coalesced_into", table_name="events")
    op.create_index("ix_jobs_status_run_after", "jobs", ["status", "run_after"])
    op.drop_index("ix_jobs_status_id", table_name="jobs")

"""An index that lets workers claim jobs in id order.

A claim looks for the first due jobs of one status in id order. With an
index on (status, run_after) the database read every due job and sorted
them, for every claim, which made draining a long queue slow; an index on
(status, id) reads them in order, and only as many as it takes. The old
index served nothing else, so it goes.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.drop_index("ix_jobs_status_run_after", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status_run_after", "jobs", ["status", "run_after"])
    op.drop_index("ix_jobs_status_id", table_name="jobs")

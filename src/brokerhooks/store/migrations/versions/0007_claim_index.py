"""An index that lets workers claim jobs in id order.

A claim looks for the first due jobs of one status in id order; with an
index on (status, id) it reads them in that order instead of reading and
sorting every due job, which made draining a long queue slow.

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


def downgrade() -> None:
    op.drop_index("ix_jobs_status_id", table_name="jobs")

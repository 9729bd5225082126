"""Alembic environment: runs migrations on the connection it is handed."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from brokerhooks.store.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `brokerhooks migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

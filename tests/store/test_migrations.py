"""Migrating from empty gives exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from brokerhooks.store import migrate
from brokerhooks.store.models import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    migrate.upgrade(engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_schema_is_current_after_upgrade(engine: Engine) -> None:
    migrate.upgrade(engine)

    assert migrate.is_current(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()

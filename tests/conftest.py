"""Fixtures shared by the suite.

The suite runs against the database named by ``BROKERHOOKS_TEST_DATABASE``:
``sqlite`` (the default: a fresh file per test) or ``postgresql`` (the
database at ``BROKERHOOKS_TEST_POSTGRES_URL``, migrated once, emptied
before each test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text

from brokerhooks.config import Settings, load_settings
from brokerhooks.logs import configure_logging
from brokerhooks.store import migrate
from brokerhooks.store.database import make_engine
from brokerhooks.store.models import Base

DATABASE = os.environ.get("BROKERHOOKS_TEST_DATABASE", "sqlite")
# Each run gets a database of its own, so that runs can go side by side.
POSTGRES_URL = os.environ.get(
    "BROKERHOOKS_TEST_POSTGRES_URL",
    f"postgresql://postgres@127.0.0.1:5432/brokerhooks_test_{os.getpid()}",
)
TEST_SECRET_KEY = Fernet.generate_key().decode()


def pytest_report_header() -> str:
    return f"brokerhooks store: {DATABASE}"


@pytest.fixture(scope="session")
def postgres_ready() -> Iterator[None]:
    """Create this run's test database, migrated; drop it at the end."""
    url = load_settings(database_url=POSTGRES_URL).database_url
    database = url.rsplit("/", 1)[1]
    admin = create_engine(
        url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if DATABASE == "postgresql":
        request.getfixturevalue("postgres_ready")
        engine = create_engine(load_settings(database_url=POSTGRES_URL).database_url)
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} CASCADE"))
        engine.dispose()
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'brokerhooks.db'}"


@pytest.fixture
def settings_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment a brokerhooks process needs to share this test's store."""
    return {
        "BROKERHOOKS_DATABASE_URL": database_url,
        "BROKERHOOKS_SECRET_KEYS": TEST_SECRET_KEY,
        "BROKERHOOKS_ENV": "production",
        "BROKERHOOKS_LOG_FORMAT": "json",
        "BROKERHOOKS_BROKER_CACHE_SECONDS": "0",
    }


@pytest.fixture
def settings(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    configure_logging("json", "INFO")
    return load_settings()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    if settings.is_sqlite:
        migrate.upgrade(engine)
    yield engine
    engine.dispose()

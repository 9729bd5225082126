"""Engines and connections, tuned per database.

SQLite runs in WAL mode with ``synchronous=FULL`` by default, so that an
acknowledged delivery is on disk. PostgreSQL keeps its own defaults
(``synchronous_commit=on``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from brokerhooks.config import Settings
from brokerhooks.errors import StoreUnavailable


def make_engine(settings: Settings, *, pool_size: int = 8) -> Engine:
    """Create the engine for ``settings.database_url``."""
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if url.endswith(":memory:") else None,
        )
        _tune_sqlite(engine, settings)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def _tune_sqlite(engine: Engine, settings: Settings) -> None:
    synchronous = settings.sqlite_synchronous
    busy_timeout = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself, so that transactions start
        # where it says and `BEGIN IMMEDIATE` can be used for writers.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def transaction(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """A transaction; on SQLite a writer takes the write lock up front.

    Taking the lock at BEGIN avoids the deadlock where two readers both try
    to upgrade to writers. Connection failures become StoreUnavailable.
    """
    options = {"sqlite_begin": "IMMEDIATE"} if write else {}
    try:
        with (
            engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            yield connection
    except OperationalError as error:
        raise StoreUnavailable(_short(error)) from error
    except DBAPIError as error:
        if error.connection_invalidated:
            raise StoreUnavailable(_short(error)) from error
        raise


def is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError:
        return False
    return True


def _short(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)

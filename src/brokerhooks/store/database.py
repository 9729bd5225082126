"""Engines and connections, tuned per database.

SQLite runs in WAL mode with ``synchronous=FULL`` by default, so that an
acknowledged delivery is on disk. PostgreSQL keeps its own defaults
(``synchronous_commit=on``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
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


# One lock per SQLite engine, held by its write transactions. SQLite lets one
# writer in at a time; a writer that finds the lock taken sleeps in steps of
# up to 100 ms before it looks again, so writers of one process that queue
# on a Python lock instead follow each other at once.
_write_locks: weakref.WeakKeyDictionary[Engine, threading.RLock] = (
    weakref.WeakKeyDictionary()
)


def write_lock(engine: Engine) -> AbstractContextManager[Any]:
    """What a write transaction on ``engine`` holds (nothing on PostgreSQL)."""
    lock = _write_locks.get(engine)
    return lock if lock is not None else nullcontext()


def _tune_sqlite(engine: Engine, settings: Settings) -> None:
    _write_locks[engine] = threading.RLock()
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
    to upgrade to writers, and the writers of this process queue for it on
    a lock of their own (see ``write_lock``). Connection failures become
    StoreUnavailable.
    """
    options = {"sqlite_begin": "IMMEDIATE"} if write else {}
    try:
        with (
            write_lock(engine) if write else nullcontext(),
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


def dialect_insert(connection: Connection, table: Any) -> Any:
    """An INSERT of ``table`` in the connection's dialect, for ``ON CONFLICT``."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def first_line(error: Exception) -> str:
    """The driver's message, without SQLAlchemy's wrapping: its first line."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError:
        return False
    return True


def _short(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)

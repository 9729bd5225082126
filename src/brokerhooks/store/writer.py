"""Group commit: concurrent deliveries share one transaction.

One writer thread owns the write path. Deliveries hand it their rows and
wait; while a commit is in flight, new rows queue up, and the next commit
takes all of them at once (up to ``batch_max``). There is no fixed
collection wait: at low load a lone delivery is committed at once, under
load the batch grows by itself. A caller's future resolves only after its
rows are committed, so "acknowledged" means "on disk".

If a batch fails, its writes are retried one by one, so that one bad write
cannot take its neighbours down with it; what still fails is reported to its
own caller.

The thread takes the next batch as soon as a commit ends and hands the
results back to the event loop in one call, so commits follow each other
without waiting for the loop. It keeps one of the engine's connections and
speaks to the database driver directly: one INSERT per table and column
list, the rows in the driver's own form. Going through SQLAlchemy Core cost
more CPU than the commit (it processes every parameter of every row), and
the thread shares the interpreter with the event loop, so each microsecond
spent here is taken from the deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import Dialect, Engine, Table
from sqlalchemy.pool import PoolProxiedConnection

from brokerhooks.errors import StoreUnavailable
from brokerhooks.store.database import first_line, write_lock
from brokerhooks.store.types import (
    UTCDateTime,
    sqlite_utc_text,
    utc_text,
    utc_value,
)

if TYPE_CHECKING:
    import psycopg

log = structlog.get_logger("brokerhooks.store.writer")


@dataclass(slots=True)
class Write:
    """Rows that must be committed together, in table order."""

    rows: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)

    def add(self, table: Table, row: dict[str, Any]) -> Write:
        self.rows.append((table, row))
        return self


Errors = list[Exception | None]
Queued = list[tuple[Write, asyncio.Future[None] | None]]


class GroupWriter:
    """Commits writes in batches from one background thread."""

    def __init__(self, engine: Engine, *, batch_max: int = 500) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._pending: Queued = []
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._idle = False  # the thread waits to be told of new writes
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Used by the writer thread only.
        self._link: _Link | None = None
        # Called after each successful commit (wakes an embedded worker).
        self.on_commit: Callable[[], None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name="group-writer", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        with self._lock:
            self._closing = True
            self._queued.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        # Let the results the thread handed back reach their callers.
        await asyncio.sleep(0)

    async def write(self, write: Write) -> None:
        """Commit ``write``; return once it is durable or raise StoreUnavailable."""
        if self._closing:
            raise StoreUnavailable("the service is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(write, future)
        await future

    def write_later(self, write: Write) -> None:
        """Queue ``write`` without waiting (delivery records of rejections)."""
        if not self._closing:
            self._queue(write, None)

    def _queue(self, write: Write, future: asyncio.Future[None] | None) -> None:
        with self._lock:
            self._pending.append((write, future))
            if self._idle:
                self._idle = False
                self._queued.notify()

    def _resolve(self, batch: Queued, errors: Errors | None) -> None:
        """On the event loop: answer the callers of a committed batch."""
        if self.on_commit is not None and (errors is None or None in errors):
            self.on_commit()
        if errors is None:
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)
            return
        for (_, future), error in zip(batch, errors, strict=True):
            if future is None or future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    # -- In the writer thread ----------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        while True:
            with self._lock:
                while not self._pending:
                    if self._closing:
                        self._disconnect()
                        return
                    self._idle = True
                    self._queued.wait()
                batch = self._pending[: self._batch_max]
                del self._pending[: self._batch_max]
            errors = self._commit([write for write, _ in batch])
            # A closed loop has nobody left waiting for the answers.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._resolve, batch, errors)

    def _commit(self, writes: Sequence[Write]) -> Errors | None:
        """Commit ``writes`` together; None, or each write's error if that failed."""
        reused = self._link is not None
        try:
            self._commit_together(writes)
        except Exception as error:
            lost = self._forget_if_broken()
            # A kept connection may have died while idle: then a lone write
            # gets a second try, on a fresh connection.
            if len(writes) == 1 and not (reused and lost):
                return [_unavailable(error)]
            log.warning(
                "group_commit_failed", size=len(writes), error=first_line(error)
            )
            return [self._commit_alone(write) for write in writes]
        return None

    def _commit_alone(self, write: Write) -> Exception | None:
        try:
            self._commit_together([write])
        except Exception as error:
            self._forget_if_broken()
            return _unavailable(error)
        return None

    def _commit_together(self, writes: Sequence[Write]) -> None:
        link = self._link
        if link is None or link.engine is not self._engine:
            self._disconnect()
            link = self._link = _Link.open(self._engine)
        link.commit(_by_table(writes))

    def _forget_if_broken(self) -> bool:
        """After a failure: drop the connection unless it is still usable."""
        if self._link is None or self._link.usable():
            return False
        self._disconnect(broken=True)
        return True

    def _disconnect(self, *, broken: bool = False) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close(broken=broken)


Groups = dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]]


def _by_table(writes: Iterable[Write]) -> Groups:
    """The rows of ``writes`` by table and column names, in first-seen order."""
    groups: Groups = {}
    for write in writes:
        for table, row in write.rows:
            key = (table, tuple(row))
            rows = groups.get(key)
            if rows is None:
                groups[key] = [row]
            else:
                rows.append(row)
    return groups


class _Link:
    """The writer's own connection, and the INSERTs it has prepared."""

    def __init__(self, engine: Engine, connection: PoolProxiedConnection) -> None:
        self.engine = engine
        self._connection = connection
        self._dialect = engine.dialect
        self._inserts: dict[tuple[Table, tuple[str, ...]], _Insert] = {}

    @staticmethod
    def open(engine: Engine) -> _Link:
        connection = engine.raw_connection()
        if engine.dialect.name == "sqlite":
            return _SQLiteLink(engine, connection)
        if engine.dialect.name == "postgresql":
            return _PostgreSQLLink(engine, connection)
        return _Link(engine, connection)

    def commit(self, groups: Groups) -> None:
        """Insert ``groups`` in one transaction (any DB-API driver)."""
        cursor = self._connection.cursor()
        try:
            for key, rows in groups.items():
                insert = self._insert(key)
                cursor.executemany(insert.sql, [insert.values(row) for row in rows])
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()

    def usable(self) -> bool:
        """Whether the connection survived a failed commit (here: assume not)."""
        return False

    def close(self, *, broken: bool) -> None:
        if broken:
            self._connection.invalidate()
        else:
            self._connection.close()

    def _insert(self, key: tuple[Table, tuple[str, ...]]) -> _Insert:
        insert = self._inserts.get(key)
        if insert is None:
            insert = self._inserts[key] = _Insert(*key, self._dialect)
        return insert


class _SQLiteLink(_Link):
    """SQLite: ``BEGIN IMMEDIATE``, one ``executemany`` per table, ``COMMIT``.

    The engine's connections run in the driver's autocommit mode (see
    ``store.database``), so the transaction is spelled out.
    """

    def __init__(self, engine: Engine, connection: PoolProxiedConnection) -> None:
        super().__init__(engine, connection)
        driver = connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        self._driver = driver
        self._cursor = driver.cursor()

    def commit(self, groups: Groups) -> None:
        cursor = self._cursor
        with write_lock(self.engine):
            cursor.execute("BEGIN IMMEDIATE")
            try:
                for key, rows in groups.items():
                    insert = self._insert(key)
                    cursor.executemany(insert.sql, [insert.values(row) for row in rows])
                cursor.execute("COMMIT")
            except BaseException:
                if self._driver.in_transaction:
                    cursor.execute("ROLLBACK")
                raise

    def usable(self) -> bool:
        return not self._driver.in_transaction

    def close(self, *, broken: bool) -> None:
        self._cursor.close()
        super().close(broken=broken)


class _PostgreSQLLink(_Link):
    """PostgreSQL: the whole batch as one statement, committed on its own.

    Each table's rows travel as one JSON parameter that the server unpacks
    with ``json_to_recordset``, so the statement's text depends only on the
    tables and columns in the batch: the driver parses it once and the
    server prepares it once, whatever the batch size. Every table's INSERT
    but the last becomes a data-modifying ``WITH`` clause, and the
    connection is in autocommit mode while the writer keeps it, so a batch
    costs one round trip. Rows keep their order, and so do the job ids the
    server gives them.
    """

    def __init__(self, engine: Engine, connection: PoolProxiedConnection) -> None:
        super().__init__(engine, connection)
        self._driver = cast("psycopg.Connection[Any]", connection.driver_connection)
        self._driver.autocommit = True
        self._cursor = self._driver.cursor()
        self._statements: dict[tuple[tuple[Table, tuple[str, ...]], ...], str] = {}

    def commit(self, groups: Groups) -> None:
        shape = tuple(groups)
        statement = self._statements.get(shape)
        if statement is None:
            statement = _with_clauses([self._json_insert(key) for key in shape])
            self._statements[shape] = statement
        parameters = [json.dumps(rows, default=_json_value) for rows in groups.values()]
        self._cursor.execute(statement, parameters)

    def usable(self) -> bool:
        from psycopg.pq import TransactionStatus

        driver = self._driver
        return (
            not driver.closed
            and not driver.broken
            and driver.info.transaction_status == TransactionStatus.IDLE
        )

    def close(self, *, broken: bool) -> None:
        self._cursor.close()
        if not broken:
            # The pool hands out connections in SQLAlchemy's mode.
            self._driver.autocommit = False
        super().close(broken=broken)

    def _json_insert(self, key: tuple[Table, tuple[str, ...]]) -> str:
        """The INSERT of one table's rows from a JSON array of objects."""
        table, names = key
        insert = self._insert(key)
        if insert.converts_more_than_timestamps:
            raise ValueError(
                f"the group writer sends {table.name} rows to PostgreSQL as JSON, "
                "which only fits text, numbers and UTC timestamps"
            )
        preparer = self._dialect.identifier_preparer
        columns = ", ".join(preparer.quote(name) for name in names)
        types = ", ".join(
            f"{preparer.quote(name)} "
            f"{table.columns[name].type.compile(dialect=self._dialect)}"
            for name in names
        )
        # Names and types come from the table's metadata, quoted by the dialect.
        return (
            f"INSERT INTO {preparer.format_table(table)} ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM json_to_recordset(%s::json) AS r({types})"
        )


def _json_value(value: object) -> str:
    """JSON for the values ``json`` cannot write: timestamps, in UTC."""
    if isinstance(value, datetime):
        return utc_text(value)
    raise TypeError(f"the group writer cannot send {type(value).__name__} values")


def _with_clauses(inserts: list[str]) -> str:
    """One statement that runs all ``inserts``."""
    *first, last = inserts
    if not first:
        return last
    clauses = ", ".join(f"w{index} AS ({sql})" for index, sql in enumerate(first))
    return f"WITH {clauses} {last}"


class _Insert:
    """An INSERT of one table's named columns, and its row converter.

    Values are converted as SQLAlchemy would bind them; UTC timestamps take
    a shorter path with the same result.
    """

    def __init__(self, table: Table, names: tuple[str, ...], dialect: Dialect) -> None:
        missing = [
            column.name
            for column in table.columns
            if column.name not in names and column.default is not None
        ]
        if missing:
            raise ValueError(
                f"rows for {table.name} must give {', '.join(missing)}: the group "
                "writer does not apply column defaults"
            )

        preparer = dialect.identifier_preparer
        placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        self.columns = names
        # Names come from the table's metadata, quoted by the dialect.
        self.sql = (
            f"INSERT INTO {preparer.format_table(table)} "  # noqa: S608
            f"({', '.join(preparer.quote(name) for name in names)}) "
            f"VALUES ({', '.join([placeholder] * len(names))})"
        )
        self._get = itemgetter(*names)
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        self.converts_more_than_timestamps = False
        for index, name in enumerate(names):
            kind = table.columns[name].type
            if isinstance(kind, UTCDateTime):
                utc = sqlite_utc_text if dialect.name == "sqlite" else utc_value
                self._converters.append((index, utc))
            elif processor := kind.dialect_impl(dialect).bind_processor(dialect):
                self._converters.append((index, processor))
                self.converts_more_than_timestamps = True

    def values(self, row: dict[str, Any]) -> Sequence[Any]:
        """``row`` as the driver takes it: a sequence in column order."""
        values: Sequence[Any] = self._get(row)
        if len(self.columns) == 1:
            values = (values,)
        if not self._converters:
            return values
        converted = list(values)
        for index, converter in self._converters:
            converted[index] = converter(converted[index])
        return converted


def _unavailable(error: Exception) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    message = first_line(error)
    log.error("write_failed", error=message)
    return StoreUnavailable(message)

"""Drain: how fast workers empty a backlog of queued events.

A backlog of ``--events`` SalesTrekker events (``dealChangesStage``, spread
round-robin over ``--deals`` deals, each deal with a client contact) is
written to the store in bulk, with exactly the rows ingest writes for each
delivery: the event, its job and its delivery record. Then N workers, as
``build_worker`` makes them for ``brokerhooks worker`` (``--concurrency``
jobs at once each), run in this process and its one asyncio event loop
until every event is ``done``. Each event is enriched: the deal and its
client are fetched from the SalesTrekker simulator, in-process through its
ASGI transport, snapshots and changes are stored, and the broker's rules
are looked up (the broker has none, so no run fires and no action runs).

Settings: ``coalesce_seconds=0``, so that every event is processed instead
of being folded into a later one of its deal, and a SalesTrekker rate
limit far above what the workers can reach. The rest are the defaults.

The clock starts when the workers start and stops at the last event's
``processed_at``. CPU is this process's (all threads), which includes the
simulator: its share is measured apart, as the thread CPU time spent inside
its ASGI app.

Every configuration (database, number of workers, round) gets a fresh
temporary store. The checks, whose failure fails the run: every event ends
``done``, with exactly one ``done`` attempt each.

    .venv/bin/python -m bench.drain [--events 10000] [--deals 500]
        [--workers 1,2,4] [--concurrency 4] [--rounds 1]
        [--databases sqlite,postgresql] [--markdown]

Exit status: 0 when every configuration passed its checks, 1 when one did
not or nothing could be measured, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import sqlalchemy
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import Engine, Table, distinct, func, select, text
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.common import (
    BenchError,
    Store,
    Unreachable,
    add_common_flags,
    code_line,
    machine_line,
    note,
    open_store,
    positive,
    positive_list,
    prepare,
    render_table,
)
from brokerhooks.config import Settings, load_settings
from brokerhooks.logs import configure_logging
from brokerhooks.pipeline.service import build_worker
from brokerhooks.pipeline.worker import Worker
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.events import EVENTS, accepted_event_write
from brokerhooks.store.models import RECEIVED, Attempt, Event
from brokerhooks.store.processing import DONE
from brokerhooks.store.queue import ordering_key
from brokerhooks.store.types import utcnow, uuid7
from brokerhooks.store.writer import Write

EVENT = "dealChangesStage"
# Rows per bulk insert when the backlog is written.
BACKLOG_BATCH = 1000
# How often the benchmark counts the done events.
POLL_SECONDS = 0.2
# A configuration fails if no event is finished for this long.
STALL_SECONDS = 120.0
RATE_PER_SECOND = 1_000_000.0


# -- The simulator ----------------------------------------------------------


class TimedApp:
    """An ASGI app that adds up the thread CPU time spent inside ``app``.

    Called through httpx's ASGITransport, the simulator runs on the event
    loop's thread and does not suspend while it answers, so the thread's CPU
    time across the call is the simulator's own.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cpu_seconds = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.thread_time()
        try:
            await self.app(scope, receive, send)
        finally:
            self.cpu_seconds += time.thread_time() - started


async def make_simulator(
    deal_count: int,
) -> tuple[SalesTrekkerSimulator, TimedApp, list[str]]:
    """A SalesTrekker organisation with ``deal_count`` deals, each with a client."""
    simulator = SalesTrekkerSimulator(secrets.token_hex(20))
    clients = (simulator.JANE_ID, simulator.RAJ_ID)
    deals = [
        await simulator.create_deal(
            f"Bench deal {number}", contact_id=clients[number % 2]
        )
        for number in range(deal_count)
    ]
    # The dealCreated webhooks go nowhere (no webhook URL); let them settle.
    await simulator.flush()
    return simulator, TimedApp(simulator.app), deals


# -- The backlog --------------------------------------------------------------


def fill_backlog(engine: Engine, broker_id: str, deals: list[str], count: int) -> None:
    """Store ``count`` events with their jobs and deliveries, as ingest does."""
    for start in range(0, count, BACKLOG_BATCH):
        writes = [
            accepted_delivery(broker_id, deals[number % len(deals)])
            for number in range(start, min(count, start + BACKLOG_BATCH))
        ]
        commit(engine, writes)
    if engine.dialect.name == "postgresql":
        # Autovacuum would get there within a minute; do not make the first
        # configuration pay for stale statistics.
        with engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("ANALYZE"))


def accepted_delivery(broker_id: str, deal_id: str) -> Write:
    """The rows of one accepted ``dealChangesStage`` delivery for ``deal_id``."""
    event_id = uuid7()
    delivery_id = uuid7()
    when = utcnow()
    body = json.dumps({"event": EVENT, "id": deal_id})
    event = {
        "id": event_id,
        "broker_id": broker_id,
        "source": "salestrekker",
        "type": EVENT,
        "entity_id": deal_id,
        "deal_id": deal_id,
        "status": RECEIVED,
        "payload": body,
        "received_at": when,
        "delivery_id": delivery_id,
    }
    delivery = {
        "id": delivery_id,
        "source": "salestrekker",
        "received_at": when,
        "client_address": "127.0.0.1",
        "status_code": 200,
        "outcome": "accepted",
        "reason": None,
        "broker_id": broker_id,
        "body_size": len(body),
        "body_sha256": None,
        "event_id": event_id,
    }
    return accepted_event_write(
        event, delivery, ordering_key=ordering_key(broker_id, deal_id, deal_id)
    )


def commit(engine: Engine, writes: list[Write]) -> None:
    """One transaction, one multi-row insert per table: the group writer's way."""
    by_table: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        for table, row in write.rows:
            by_table[table].append(row)
    with transaction(engine, write=True) as connection:
        for table, rows in by_table.items():
            connection.execute(table.insert(), rows)


# -- Counting ---------------------------------------------------------------
# The benchmark's own queries; they do not belong in store/, which serves the
# service.


def count_done(engine: Engine) -> int:
    with transaction(engine) as connection:
        query = select(func.count()).select_from(EVENTS).where(Event.status == DONE)
        return int(connection.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the store says once the workers are stopped."""

    done: int
    done_attempts: int
    events_with_done_attempt: int
    other_attempts: dict[str, int]
    last_processed: datetime.datetime | None


def outcome(engine: Engine) -> Outcome:
    with transaction(engine) as connection:
        done = connection.scalar(
            select(func.count()).select_from(EVENTS).where(Event.status == DONE)
        )
        done_attempts, events_with_done = connection.execute(
            select(func.count(), func.count(distinct(Attempt.event_id))).where(
                Attempt.outcome == "done"
            )
        ).one()
        others = connection.execute(
            select(Attempt.outcome, func.count())
            .where(Attempt.outcome != "done")
            .group_by(Attempt.outcome)
        ).all()
        last_processed = connection.scalar(select(func.max(Event.processed_at)))
    return Outcome(
        done=int(done or 0),
        done_attempts=int(done_attempts),
        events_with_done_attempt=int(events_with_done),
        other_attempts={str(name): int(number) for name, number in others},
        last_processed=last_processed,
    )


# -- One configuration --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One drain of one backlog."""

    database: str
    workers: int
    events: int
    seconds: float
    cpu_seconds: float
    simulator_cpu_seconds: float
    graphql_calls: int
    operations: Counter[str] = field(default_factory=Counter)
    other_attempts: dict[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.events * 1000

    @property
    def simulator_cpu_ms(self) -> float:
        return self.simulator_cpu_seconds / self.events * 1000


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    deals: int
    workers: list[int]
    concurrency: int
    rounds: int
    databases: list[str]
    postgres_url: str
    log_level: str
    markdown: bool


class Drain:
    """Drains backlogs with the simulator of one run."""

    def __init__(
        self,
        options: Options,
        simulator: SalesTrekkerSimulator,
        app: TimedApp,
        deals: list[str],
    ) -> None:
        self._options = options
        self._simulator = simulator
        self._app = app
        self._deals = deals

    async def sample(self, store: Store, workers: int) -> Sample:
        """Fill a fresh store with the backlog and drain it with ``workers``."""
        secret_key = Fernet.generate_key().decode()
        engine, broker = await asyncio.to_thread(
            prepare, store, secret_key, self._simulator.api_key
        )
        try:
            await asyncio.to_thread(
                fill_backlog, engine, broker.id, self._deals, self._options.events
            )
            settings = worker_settings(store, secret_key, self._options.concurrency)
            return await self._drain(store, engine, settings, workers)
        finally:
            engine.dispose()

    async def _drain(
        self, store: Store, engine: Engine, settings: Settings, count: int
    ) -> Sample:
        events = self._options.events
        workers = [
            build_worker(engine, settings, transport=httpx.ASGITransport(app=self._app))
            for _ in range(count)
        ]
        calls_before = Counter(self._simulator.requests)
        simulator_before = self._app.cpu_seconds
        cpu_before = time.process_time()
        started = utcnow()

        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        problems = await self._wait(engine, events, tasks)
        cpu = time.process_time() - cpu_before
        simulator_cpu = self._app.cpu_seconds - simulator_before
        calls = Counter(self._simulator.requests) - calls_before
        await stop(workers, tasks)

        found = await asyncio.to_thread(outcome, engine)
        problems += check(found, events)
        end = found.last_processed or utcnow()
        return Sample(
            database=store.name,
            workers=count,
            events=events,
            seconds=(end - started).total_seconds(),
            cpu_seconds=cpu,
            simulator_cpu_seconds=simulator_cpu,
            graphql_calls=calls.total(),
            operations=calls,
            other_attempts=found.other_attempts,
            problems=tuple(problems),
        )

    async def _wait(
        self, engine: Engine, events: int, tasks: list[asyncio.Task[None]]
    ) -> list[str]:
        """Until every event is done; the problems if that never happens."""
        done, progress_at = 0, time.monotonic()
        while done < events:
            await asyncio.sleep(POLL_SECONDS)
            crashed = [task for task in tasks if task.done()]
            if crashed:
                return [f"a worker stopped by itself: {crashed[0].exception()!r}"]
            now_done = await asyncio.to_thread(count_done, engine)
            if now_done > done:
                done, progress_at = now_done, time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                return [f"stalled at {done:,}/{events:,} done events"]
        return []


def worker_settings(store: Store, secret_key: str, concurrency: int) -> Settings:
    """Production defaults, but every event processed and no rate limit to speak of."""
    return load_settings(
        _env_file=None,
        database_url=store.url,
        secret_keys=secret_key,
        env="production",
        coalesce_seconds=0.0,
        salestrekker_rate_per_second=RATE_PER_SECOND,
        worker_concurrency=concurrency,
    )


async def stop(workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*(worker.stop() for worker in workers))
    await asyncio.gather(*tasks, return_exceptions=True)


def check(found: Outcome, events: int) -> list[str]:
    problems = []
    if found.done != events:
        problems.append(f"{found.done:,} of {events:,} events are done")
    if found.done_attempts != events or found.events_with_done_attempt != events:
        problems.append(
            f"{found.done_attempts:,} done attempts for "
            f"{found.events_with_done_attempt:,} events; expected one each for "
            f"{events:,}"
        )
    return problems


# -- The run ----------------------------------------------------------------


async def run_all(options: Options) -> tuple[list[Sample], list[Store], list[str]]:
    simulator, app, deals = await make_simulator(options.deals)
    drain = Drain(options, simulator, app, deals)
    samples: list[Sample] = []
    stores: dict[str, Store] = {}
    skipped: list[str] = []
    for database in options.databases:
        try:
            for number in range(1, options.rounds + 1):
                for workers in options.workers:
                    with open_store(database, options.postgres_url) as store:
                        stores[store.name] = store
                        sample = await drain.sample(store, workers)
                    samples.append(sample)
                    report(sample, f"round {number}/{options.rounds}")
        except Unreachable as error:
            skipped.append(f"{database}: skipped, {error}")
            note(f"{database} skipped: {error}")
    return samples, list(stores.values()), skipped


def report(sample: Sample, label: str) -> None:
    note(
        f"{sample.database} workers={sample.workers} {label}: "
        f"{sample.events:,} events in {sample.seconds:.1f} s, "
        f"{sample.rate:,.0f}/s, CPU {sample.cpu_ms:.2f} ms/event "
        f"(simulator {sample.simulator_cpu_ms:.2f}), "
        f"{sample.graphql_calls / sample.events:.2f} GraphQL calls/event"
    )
    operations = ", ".join(
        f"{name} {count / sample.events:.2f}"
        for name, count in sample.operations.most_common()
    )
    note(f"  GraphQL calls/event by operation: {operations}")
    if sample.other_attempts:
        note(f"  attempts other than done: {sample.other_attempts}")
    for problem in sample.problems:
        note(f"FAILED {sample.database} workers={sample.workers} {label}: {problem}")


COLUMNS = (
    "database",
    "workers",
    "jobs at once",
    "events/s",
    "CPU ms/event",
    "of it simulator",
    "GraphQL calls/event",
    "done once",
)


def rows(samples: list[Sample], options: Options) -> list[list[str]]:
    groups: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[(sample.database, sample.workers)].append(sample)
    return [_row(group, options) for group in groups.values()]


def _row(group: list[Sample], options: Options) -> list[str]:
    rates = [sample.rate for sample in group]
    rate = f"{statistics.median(rates):,.0f}"
    if len(rates) > 1:
        rate += f" ({min(rates):,.0f}-{max(rates):,.0f})"
    first = group[0]
    failed = sum(1 for sample in group if sample.problems)
    events = sum(sample.events for sample in group)
    return [
        first.database,
        str(first.workers),
        str(first.workers * options.concurrency),
        rate,
        f"{_median([sample.cpu_ms for sample in group]):.2f}",
        f"{_median([sample.simulator_cpu_ms for sample in group]):.2f}",
        f"{sum(s.graphql_calls for s in group) / events:.2f}",
        f"NO ({failed} failed)" if failed else f"yes ({events:,})",
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def machine(stores: list[Store], options: Options) -> list[str]:
    """Lines that say what the table was measured on."""
    lines = [
        machine_line(),
        f"python: {platform.python_version()}, asyncio event loop (as "
        f"`brokerhooks worker`); SQLAlchemy {sqlalchemy.__version__}; "
        f"log level {options.log_level}",
    ]
    lines.extend(
        f"{store.name} {store.version}: {store.durability}" for store in stores
    )
    lines.append(
        f"backlog: {options.events:,} {EVENT} events over {options.deals:,} deals "
        "(each with a client contact), rows as ingest writes them, a fresh store "
        f"per drain; {options.rounds} round(s) per configuration, the median and "
        "its range"
    )
    lines.append(
        "workers: N `build_worker` workers in one process and event loop, "
        f"concurrency {options.concurrency} each, sharing one engine; "
        "coalesce_seconds=0 (every event processed), SalesTrekker rate limit "
        "off; SalesTrekker simulator in-process (ASGI transport); no rules"
    )
    lines.append(code_line())
    lines.append(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    return lines


# -- Command line -----------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drain",
        description="How fast 1, 2 and 4 workers drain a backlog of events "
        "through enrichment, on SQLite and PostgreSQL.",
    )
    parser.add_argument(
        "--events", type=positive(int), default=10_000, help="the backlog (10000)"
    )
    parser.add_argument(
        "--deals", type=positive(int), default=500, help="deals it is spread over (500)"
    )
    parser.add_argument(
        "--workers",
        type=positive_list("1,2,4"),
        default=[1, 2, 4],
        help="comma-separated numbers of workers (1,2,4)",
    )
    parser.add_argument(
        "--concurrency", type=positive(int), default=4, help="jobs per worker (4)"
    )
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=1,
        help="drains per configuration, each of a fresh backlog (1)",
    )
    add_common_flags(
        parser,
        log_level_help="the workers' log level (WARNING: no line per attempt); "
        "the lines go to a file",
    )
    return parser.parse_args(argv)


def options_from(arguments: argparse.Namespace) -> Options:
    return Options(
        events=int(arguments.events),
        deals=int(arguments.deals),
        workers=arguments.workers,
        concurrency=int(arguments.concurrency),
        rounds=int(arguments.rounds),
        databases=arguments.databases,
        postgres_url=arguments.postgres_url,
        log_level=arguments.log_level,
        markdown=arguments.markdown,
    )


def log_to(stream: TextIO, level: str) -> None:
    """The service's logging, written to ``stream`` instead of standard error."""
    configure_logging("json", level)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))


def run(options: Options) -> int:
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as folder:
        log_path = Path(folder) / "workers.log"
        with log_path.open("w") as log:
            log_to(log, options.log_level)
            samples, stores, skipped = asyncio.run(run_all(options))
        problems = [problem for sample in samples for problem in sample.problems]
        if problems:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            note("the workers' log ends with:\n" + "\n".join(tail))

    if not samples:
        note("error: nothing was measured")
        return 1
    header = machine(stores, options) + skipped
    table = rows(samples, options)
    print(render_table(header, COLUMNS, table, markdown=options.markdown))
    for sample in samples:
        for problem in sample.problems:
            note(f"FAILED {sample.database} workers={sample.workers}: {problem}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(parse(argv))
    # The settings are the defaults and the flags; nothing inherited changes them.
    for name in [name for name in os.environ if name.startswith("BROKERHOOKS_")]:
        del os.environ[name]
    try:
        return run(options)
    except BenchError as error:
        note(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

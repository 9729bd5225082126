"""Console: the event list with a million events in the store.

A store is filled with ``--events`` events (1,000,000 by default) of two
brokers: nine in ten belong to the broker whose staff browse, the rest to
another. They are spread over the last year, oldest first, with ids made
from their times as ingest makes them, over the thirteen SalesTrekker event
types (some common, some rare), over ``--deals`` deals and their contacts,
and over the statuses a store that has been running for a year holds:
nearly all ``done``, some ``coalesced``, a few ``needs_attention`` or
``dead``, the newest still ``received``.

Then the real app (``brokerhooks serve --no-worker``, its own process)
answers ``GET /console/events`` over loopback HTTP, signed in as one of
the broker's staff and as an admin, who sees every broker. Each view is
asked for ``--repeat`` times after one warm-up request; the table gives the
median and the slowest, and the rows on the page. A view checks that it
answers 200 with the rows the store holds for it (up to a page).

The views: the first page; a page deep in the list (reached by its
cursor, as "Older" links do); filtered by a common type, a rare type, a
status few events have, one deal, one day a month ago; a text search in the
payloads.

    .venv/bin/python -m bench.console [--events 1000000] [--deals 20000]
        [--repeat 10] [--databases sqlite,postgresql] [--markdown]

Exit status: 0 when every view passed its checks, 1 when one did not or
nothing could be measured, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, insert, select

from bench.common import (
    BenchError,
    Server,
    Store,
    Unreachable,
    add_common_flags,
    code_line,
    machine_line,
    note,
    open_store,
    percentile,
    positive,
    prepare,
    render_table,
    running,
    server_env,
)
from brokerhooks.app import create_app
from brokerhooks.config import load_settings
from brokerhooks.console import sessions
from brokerhooks.console.passwords import hash_password
from brokerhooks.logs import configure_logging
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import brokers, users
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.types import utcnow

PAGE_SIZE = 50  # the console's
# Weights of the event types, from the commonest: a broker's stream is
# mostly deal updates and stage moves; "dealChangesRequiredDocuments" is rare.
TYPE_WEIGHTS = {
    "dealUpdated": 30.0,
    "dealChangesStage": 20.0,
    "noteCreated": 12.0,
    "contactUpdated": 10.0,
    "dealChangesStatus": 8.0,
    "dealChangesDueDate": 6.0,
    "dealChangesOwner": 4.0,
    "noteUpdated": 3.0,
    "dealCreated": 3.0,
    "contactCreated": 2.0,
    "dealChangesWorkflow": 1.5,
    "dealChangesAttachments": 0.45,
    "dealChangesRequiredDocuments": 0.05,
}
COMMON_TYPE = "dealUpdated"
RARE_TYPE = "dealChangesRequiredDocuments"
# Statuses of a year's events; the newest NEWEST_RECEIVED are still queued.
STATUS_WEIGHTS = {
    "done": 97.4,
    "coalesced": 2.2,
    "needs_attention": 0.3,
    "dead": 0.1,
}
RARE_STATUS = "needs_attention"
NEWEST_RECEIVED = 100
CHUNK = 20_000
_ROW_LINK = re.compile(r'href="/console/events/[0-9a-f-]{36}"')


# -- The store ----------------------------------------------------------------


@dataclass
class Filled:
    """What the benchmark needs to know of the events it wrote."""

    broker_id: str
    other_id: str
    seconds: float
    deal: str = ""
    search: str = ""
    deep_cursor: str = ""
    day: datetime.date | None = None


def uuid7_at(moment_ms: int, rand: int) -> str:
    """A version-7 UUID for a past moment, as ingest would have made it then."""
    value = (
        (moment_ms << 80)
        | ((rand >> 62) << 64)
        | (rand & ((1 << 62) - 1))
        | (0x7 << 76)
        | (0b10 << 62)
    )
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def event_rows(
    count: int, broker_ids: tuple[str, str], deals: int, seed: int = 7
) -> Iterator[dict[str, Any]]:
    """``count`` events over the last year, oldest first."""
    chooser = random.Random(seed)
    types = list(TYPE_WEIGHTS)
    type_weights = list(TYPE_WEIGHTS.values())
    statuses = list(STATUS_WEIGHTS)
    status_weights = list(STATUS_WEIGHTS.values())
    deal_ids = [str(_uuid4(chooser)) for _ in range(deals)]
    contact_ids = [str(_uuid4(chooser)) for _ in range(deals)]
    now = utcnow()
    start = now - datetime.timedelta(days=365)
    step = (now - start) / count
    for index in range(count):
        moment = start + step * index
        event_type = chooser.choices(types, type_weights)[0]
        which = chooser.randrange(deals)
        broker_id = broker_ids[0] if chooser.random() < 0.9 else broker_ids[1]
        deal_id: str | None = deal_ids[which]
        payload: dict[str, str] = {"event": event_type}
        if event_type.startswith("contact"):
            entity_id, deal_id = contact_ids[which], None
        elif event_type.startswith("note"):
            entity_id = _uuid4(chooser)
            payload["idDeal"] = deal_ids[which]
        else:
            entity_id = deal_ids[which]
        payload["id"] = entity_id
        if index >= count - NEWEST_RECEIVED:
            status = "received"
        else:
            status = chooser.choices(statuses, status_weights)[0]
        millis = int(moment.timestamp() * 1000)
        yield {
            "id": uuid7_at(millis, chooser.getrandbits(74)),
            "broker_id": broker_id,
            "source": "salestrekker",
            "type": event_type,
            "entity_id": entity_id,
            "deal_id": deal_id,
            "status": status,
            "payload": json.dumps(payload),
            "received_at": moment,
            "delivery_id": uuid7_at(millis, chooser.getrandbits(74)),
            "status_reason": (
                "SalesTrekker answered 404 for the deal"
                if status in ("needs_attention", "dead")
                else None
            ),
            "processed_at": None if status == "received" else moment,
        }


def _uuid4(chooser: random.Random) -> str:
    digits = f"{chooser.getrandbits(128):032x}"
    digits = digits[:12] + "4" + digits[13:16] + "8" + digits[17:]
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def fill(engine: Engine, broker_id: str, other_id: str, options: Options) -> Filled:
    """Write the events in chunks, then pick the values the views filter on."""
    started = time.perf_counter()
    chunk: list[dict[str, Any]] = []
    written = 0
    for row in event_rows(options.events, (broker_id, other_id), options.deals):
        chunk.append(row)
        if len(chunk) == CHUNK:
            with transaction(engine, write=True) as connection:
                connection.execute(insert(Event), chunk)
            written += len(chunk)
            chunk = []
            if written % 200_000 == 0:
                note(f"  {written:,} events written")
    if chunk:
        with transaction(engine, write=True) as connection:
            connection.execute(insert(Event), chunk)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.exec_driver_sql("VACUUM ANALYZE events")
    else:
        with transaction(engine, write=True) as connection:
            connection.exec_driver_sql("ANALYZE")
    filled = Filled(broker_id, other_id, time.perf_counter() - started)

    with transaction(engine) as connection:
        # A deal of the broker with events, a payload word, a cursor halfway.
        filled.deal = str(
            connection.scalar(
                select(Event.deal_id)
                .where(Event.broker_id == broker_id, Event.deal_id.is_not(None))
                .order_by(Event.id.desc())
                .limit(1)
                .offset(1000)
            )
        )
        filled.search = filled.deal[:13]
        filled.deep_cursor = str(
            connection.scalar(
                select(Event.id)
                .where(Event.broker_id == broker_id)
                .order_by(Event.id)
                .limit(1)
                .offset(options.events // 2 * 9 // 10)
            )
        )
    filled.day = (utcnow() - datetime.timedelta(days=30)).date()
    return filled


def expected_rows(engine: Engine, view: View, broker_id: str | None) -> int:
    """How many rows the first page of ``view`` must show (up to a page)."""
    query = select(func.count()).select_from(
        select(Event.id).where(*view.conditions(broker_id)).limit(PAGE_SIZE).subquery()
    )
    with transaction(engine) as connection:
        return int(connection.scalar(query) or 0)


# -- The views ----------------------------------------------------------------


@dataclass
class View:
    name: str
    params: dict[str, str]
    conditions: Callable[[str | None], list[Any]]


def views(filled: Filled) -> list[View]:
    def of(broker_id: str | None, *more: Any) -> list[Any]:
        return ([Event.broker_id == broker_id] if broker_id else []) + list(more)

    day = filled.day
    assert day is not None
    # The console reads days in its time zone; the bench runs it in UTC.
    since = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
    until = since + datetime.timedelta(days=1)
    return [
        View("first page", {}, lambda b: of(b)),
        View(
            "a page halfway down",
            {"before": filled.deep_cursor},
            lambda b: of(b, Event.id < filled.deep_cursor),
        ),
        View(
            f"type {COMMON_TYPE} (common)",
            {"type": COMMON_TYPE},
            lambda b: of(b, Event.type == COMMON_TYPE),
        ),
        View(
            f"type {RARE_TYPE} (rare)",
            {"type": RARE_TYPE},
            lambda b: of(b, Event.type == RARE_TYPE),
        ),
        View(
            f"status {RARE_STATUS}",
            {"status": RARE_STATUS},
            lambda b: of(b, Event.status == RARE_STATUS),
        ),
        View(
            "one deal",
            {"deal": filled.deal},
            lambda b: of(b, Event.deal_id == filled.deal),
        ),
        View(
            "one day a month ago",
            {"since": day.isoformat(), "until": day.isoformat()},
            lambda b: of(b, Event.received_at >= since, Event.received_at < until),
        ),
        View(
            "text search in payloads",
            {"text": filled.search},
            lambda b: of(b, Event.payload.contains(filled.search)),
        ),
    ]


@dataclass
class Timing:
    database: str
    viewer: str
    view: str
    rows: int
    times: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ms(self, fraction: float) -> float:
        return percentile(sorted(self.times), fraction) * 1000


def measure(
    store: Store,
    url: str,
    engine: Engine,
    cookie: str,
    tokens: dict[str, tuple[str, str | None]],
    filled: Filled,
    repeat: int,
) -> list[Timing]:
    timings: list[Timing] = []
    for viewer, (token, broker_id) in tokens.items():
        with httpx.Client(base_url=url, timeout=120) as client:
            client.cookies.set(cookie, token)
            for view in views(filled):
                expected = expected_rows(engine, view, broker_id)
                timing = Timing(store.name, viewer, view.name, expected)
                for attempt in range(repeat + 1):
                    began = time.perf_counter()
                    answer = client.get("/console/events", params=view.params)
                    elapsed = time.perf_counter() - began
                    if answer.status_code != 200:
                        timing.problems.append(
                            f"{viewer}, {view.name}: answered {answer.status_code}"
                        )
                        break
                    shown = len(_ROW_LINK.findall(answer.text))
                    if shown != expected:
                        timing.problems.append(
                            f"{viewer}, {view.name}: {shown} rows shown, "
                            f"{expected} expected"
                        )
                        break
                    if attempt:  # the first request warms the caches
                        timing.times.append(elapsed)
                note(
                    f"{store.name} {viewer} {view.name}: "
                    + (
                        f"p50 {timing.ms(0.5):.1f} ms, max {timing.ms(1.0):.1f} ms"
                        if timing.times
                        else "FAILED"
                    )
                )
                timings.append(timing)
    return timings


def sign_in_tokens(engine: Engine, broker_id: str) -> dict[str, tuple[str, str | None]]:
    """Sessions, made in the store, of one of the broker's staff and an admin."""
    made: dict[str, tuple[str, str | None]] = {}
    password = hash_password(Secret(secrets.token_urlsafe(16)))
    with transaction(engine, write=True) as connection:
        for viewer, owner in (("broker staff", broker_id), ("admin", None)):
            user = users.create_user(
                connection,
                email=f"{viewer.replace(' ', '-')}@bench.example",
                password_hash=password,
                broker_id=owner,
                is_admin=owner is None,
            )
            made[viewer] = (sessions.start_session(connection, user.id), owner)
    return made


# -- Running ------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    deals: int
    repeat: int
    databases: list[str]
    postgres_url: str
    markdown: bool


def run_database(store: Store, options: Options, folder: Path) -> list[Timing]:
    secret_key = Fernet.generate_key().decode()
    engine, broker = prepare(store, secret_key, secrets.token_hex(20))
    try:
        other_key = secrets.token_hex(20)
        settings = load_settings(
            database_url=store.url, secret_keys=secret_key, env="production"
        )
        vault = Vault(settings.fernet_keys)
        with transaction(engine, write=True) as connection:
            other = brokers.create_broker(
                connection,
                name="other",
                salestrekker_url="https://other.salestrekker.com",
                api_key_encrypted=vault.encrypt(Secret(other_key)),
                api_key_hash=vault.lookup_hash(Secret(other_key)),
            )
        note(f"{store.name}: writing {options.events:,} events")
        filled = fill(engine, broker.id, other.id, options)
        note(f"{store.name}: written and analysed in {filled.seconds:.0f} s")
        tokens = sign_in_tokens(engine, broker.id)
        env = server_env(store, secret_key, "WARNING")
        env["BROKERHOOKS_TIMEZONE"] = "UTC"
        app = Server("app", env, folder, module="bench.console")
        with running(app):
            cookie = sessions.CookiePolicy.for_public_url(settings.public_url).session
            return measure(
                store, app.url, engine, cookie, tokens, filled, options.repeat
            )
    finally:
        engine.dispose()


def run(options: Options) -> int:
    timings: list[Timing] = []
    stores: list[Store] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as name:
        for database in options.databases:
            try:
                with open_store(database, options.postgres_url) as store:
                    stores.append(store)
                    timings.extend(run_database(store, options, Path(name)))
            except Unreachable as error:
                skipped.append(f"{database}: skipped, {error}")
                note(f"{database} skipped: {error}")
    if not timings:
        note("error: nothing was measured")
        return 1

    header = [
        machine_line(),
        f"python: {sys.version.split()[0]}; uvicorn {uvicorn.__version__}, "
        "one process, the app as `brokerhooks serve --no-worker` builds it",
        *(f"{store.name} {store.version}: {store.durability}" for store in stores),
        f"store: {options.events:,} events of two brokers (90% / 10%) over a "
        f"year, {options.deals:,} deals; the console's page of {PAGE_SIZE}",
        f"each view: 1 warm-up request, then {options.repeat} timed, over "
        "loopback HTTP with a session cookie",
        code_line(),
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        *skipped,
    ]
    columns = ("database", "viewer", "view", "rows", "p50 ms", "max ms")
    table = [
        [
            timing.database,
            timing.viewer,
            timing.view,
            str(timing.rows),
            f"{timing.ms(0.5):.1f}" if timing.times else "failed",
            f"{timing.ms(1.0):.1f}" if timing.times else "failed",
        ]
        for timing in timings
    ]
    print(
        render_table(header, columns, table, markdown=options.markdown, left=(0, 1, 2))
    )
    problems = [problem for timing in timings for problem in timing.problems]
    for problem in problems:
        note("FAILED " + problem)
    return 1 if problems else 0


def _serve_app(port: int) -> None:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console",
        description="Time the console's event list with a million events stored.",
    )
    parser.add_argument("--events", type=positive(int), default=1_000_000)
    parser.add_argument("--deals", type=positive(int), default=20_000)
    parser.add_argument(
        "--repeat", type=positive(int), default=10, help="timed requests per view"
    )
    add_common_flags(parser)
    parser.add_argument("--serve", choices=("app",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    if arguments.serve == "app":
        _serve_app(arguments.port)
        return 0
    options = Options(
        events=int(arguments.events),
        deals=int(arguments.deals),
        repeat=int(arguments.repeat),
        databases=arguments.databases,
        postgres_url=arguments.postgres_url,
        markdown=arguments.markdown,
    )
    try:
        return run(options)
    except BenchError as error:
        note(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

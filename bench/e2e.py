"""End to end: from a SalesTrekker webhook to the Graph call it causes.

Three processes, as in tests/pipeline/test_rules_flow.py but each on its own:

- brokerhooks: the real app with its embedded worker, as ``brokerhooks
  serve`` builds it (one uvicorn process, uvloop and httptools when
  installed), with the Microsoft 365 simulator inside it: Graph is called
  in-process through the simulator's transport, and msal reaches the
  simulator's identity provider over HTTPS on loopback (a throwaway CA from
  ``make_loopback_certificates``, trusted through ``REQUESTS_CA_BUNDLE``).
  The broker has an app-only connection named office, marked connected,
  and one rule: a To Do task on every ``dealChangesStage``.
- the SalesTrekker simulator, served over loopback HTTP; the broker's
  ``salestrekker_url`` points at it. It holds ``--deals`` deals, each with a
  client contact.
- this process: it POSTs webhook bodies (``{"event": "dealChangesStage",
  "id": <deal>}``, the deals in turn) to ``/hooks/salestrekker`` with the
  broker's key at a steady ``--rate``, first for ``--warmup`` seconds, then
  for ``--seconds`` that are measured.

A wrapper around the Graph simulator's transport notes the time of every
request it receives (CLOCK_MONOTONIC, which every process shares) and, for a
task creation, the event it was made for (the task's linked resource names
it). The latency of a delivery runs from just before its webhook is sent to
the moment the Graph simulator receives its task. Runs/s counts the tasks
the simulator received during the measured period, per second.

Settings: the production defaults, with ``--poll-seconds`` (the worker is
also woken after each commit of new events), ``--coalesce-seconds`` (the
default window; the deals are taken in turn, so no two deliveries of a deal
fall within it) and the SalesTrekker rate limit lifted (the default, 10
requests/s per broker, would cap a broker at 5 deal events/s).

The checks, whose failure fails the run: every delivery is answered 200,
the Graph simulator receives exactly one task for each, and the store ends
with every event done and every action done.

    .venv/bin/python -m bench.e2e [--rate 20] [--seconds 30] [--warmup 5]
        [--databases sqlite,postgresql] [--markdown]

Exit status: 0 when every check passed, 1 when one did not or the servers
could not be started, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import starlette
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.common import (
    HTTP,
    LOOP,
    ROOT,
    BenchError,
    Server,
    Store,
    Unreachable,
    add_common_flags,
    code_line,
    free_port,
    machine_line,
    note,
    open_store,
    percentile,
    positive,
    prepare,
    render_table,
    running,
    serve,
    server_env,
)
from brokerhooks.app import create_app
from brokerhooks.config import Settings, load_settings
from brokerhooks.logs import configure_logging
from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.pipeline.service import build_worker
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.simulators.msgraph import (
    MicrosoftGraphSimulator,
    make_loopback_certificates,
)
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store import connections
from brokerhooks.store.database import transaction
from brokerhooks.store.models import ActionRecord, Event

PATH = "/hooks/salestrekker"
EVENT = "dealChangesStage"
TENANT = "9b1f2c3d-0000-4000-8000-0000000be4c4"
CLIENT_ID = "6a1c0de0-0000-4000-8000-0000000be4c4"
CLIENT_SECRET = "bench-client-secret-0123456789abcdef"
MAILBOX = "broker@contoso.test"
RULES = """\
rules:
  - id: stage-task
    name: A To Do task on every stage change
    trigger: dealChangesStage
    actions:
      - id: task
        kind: todo_task
        connection: office
        params:
          list: Deals
          title: "Stage changed on {{ deal.name }}"
"""
# The files the brokerhooks process writes in its working folder: one JSON
# line per request the Graph side and the identity provider received.
GRAPH_RECORD = "graph.jsonl"
IDENTITY_RECORD = "identity.jsonl"
# Waiting for the tasks of the deliveries sent stops when none arrives for this long.
SETTLE_SECONDS = 30.0
SALESTREKKER_KEY_VARIABLE = "BENCH_SALESTREKKER_KEY"


# -- The brokerhooks process ----------------------------------------------------


class Recorder:
    """Writes one JSON line per request to a file, from one thread."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", buffering=1)

    def write(self, **fields: Any) -> None:
        self._file.write(json.dumps(fields) + "\n")


class RecordingTransport(httpx.AsyncBaseTransport):
    """The Graph simulator's transport, noting when each request arrived.

    A task creation also names its event: brokerhooks links every task to
    ``brokerhooks event <id>``.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        arrived = time.monotonic()
        cpu = time.thread_time()
        response = await self._inner.handle_async_request(request)
        cpu = time.thread_time() - cpu
        creates_task = request.method == "POST" and request.url.path.endswith("/tasks")
        self._recorder.write(
            at=arrived,
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            event=task_event(request) if creates_task else None,
            cpu=cpu,
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def task_event(request: httpx.Request) -> str | None:
    """The event a task creation is for, from its linked resource."""
    body = json.loads(request.content)
    for link in body.get("linkedResources") or []:
        name = str(link.get("displayName", ""))
        if name.startswith("brokerhooks event "):
            return name.removeprefix("brokerhooks event ")
    return None


class RecordingApp:
    """An ASGI app that notes each request to ``app``, with its thread CPU."""

    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self._app = app
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        arrived = time.monotonic()
        cpu = time.thread_time()
        try:
            await self._app(scope, receive, send)
        finally:
            self._recorder.write(
                at=arrived,
                method=scope["method"],
                path=scope["path"],
                cpu=time.thread_time() - cpu,
            )


@contextmanager
def serve_https(app: ASGIApp, folder: Path, port: int) -> Iterator[None]:
    """The identity provider over TLS, in a thread of this process."""
    certificates = make_loopback_certificates(folder)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=str(certificates.cert_path),
        ssl_keyfile=str(certificates.key_path),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="identity", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise BenchError("the identity provider did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def graph_simulator() -> MicrosoftGraphSimulator:
    simulator = MicrosoftGraphSimulator(tenant_id=TENANT)
    simulator.add_app(CLIENT_ID, CLIENT_SECRET)
    simulator.add_user(MAILBOX, "Bench Broker")
    return simulator


def _serve_app(port: int, identity_port: int) -> None:
    """Entry point of the brokerhooks process; settings come from the environment.

    The app and its worker are built as ``brokerhooks serve`` builds them,
    with Graph calls going to the simulator in-process.
    """
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    folder = Path.cwd()
    graph = graph_simulator()
    identity = RecordingApp(graph.app, Recorder(folder / IDENTITY_RECORD))
    with serve_https(identity, folder, identity_port):
        runtime = Runtime.build(settings)
        transport = RecordingTransport(
            graph.transport(), Recorder(folder / GRAPH_RECORD)
        )
        worker = build_worker(
            runtime.engine, settings, metrics=runtime.metrics, graph_transport=transport
        )
        serve(create_app(settings, runtime, worker), settings, port)


def _serve_salestrekker(port: int) -> None:
    """Entry point of the SalesTrekker simulator's process."""
    configure_logging("json", "WARNING")
    simulator = SalesTrekkerSimulator(os.environ[SALESTREKKER_KEY_VARIABLE])
    uvicorn.run(
        simulator.app,
        host="127.0.0.1",
        port=port,
        loop=LOOP,
        http=HTTP,
        log_config=None,
        access_log=False,
    )


# -- Setting up -----------------------------------------------------------------


async def add_deals(url: str, count: int) -> list[str]:
    """``count`` deals in the SalesTrekker simulator, each with a client."""
    clients = (SalesTrekkerSimulator.JANE_ID, SalesTrekkerSimulator.RAJ_ID)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        deals = []
        for number in range(count):
            response = await client.post(
                "/_sim/deals",
                json={"name": f"Bench deal {number}", "contact": clients[number % 2]},
            )
            response.raise_for_status()
            deals.append(str(response.json()["id"]))
    return deals


def add_office(engine: Engine, secret_key: str, broker_id: str, base: str) -> None:
    """The broker's app-only connection, connected, and its rule."""
    vault = Vault([secret_key.encode()])
    with transaction(engine, write=True) as connection:
        record = connections.create_m365_connection(
            connection,
            broker_id=broker_id,
            name="office",
            kind="app_only",
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            client_secret_encrypted=vault.encrypt(Secret(CLIENT_SECRET)),
            authority_url=base,
            graph_url=base,
            mailbox=MAILBOX,
        )
        connections.mark_m365_connected(connection, record.id)
        for source in split_rule_file(
            RULES, source_name="bench", connections=["office"]
        ):
            save_rule_source(connection, broker_id, source)


# -- The load -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook sent, and its answer."""

    sent: float  # time.monotonic()
    answered: float
    status: int
    event: str | None


class Load:
    """Webhooks to the app at a steady rate, the deals in turn."""

    def __init__(self, url: str, api_key: str, deals: list[str]) -> None:
        self._client = httpx.AsyncClient(
            base_url=url,
            timeout=30,
            headers={
                "Authorization": f"Salestrekker {api_key}",
                "Content-Type": "application/json",
            },
            limits=httpx.Limits(max_connections=256),
        )
        self._deals = deals
        self._next = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def steady(self, rate: float, seconds: float) -> list[Delivery]:
        """``rate`` webhooks a second for ``seconds``, each on its own schedule."""
        start = time.monotonic()
        sending = []
        for number in range(round(rate * seconds)):
            delay = start + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sending.append(asyncio.create_task(self.send()))
        return list(await asyncio.gather(*sending))

    async def send(self) -> Delivery:
        deal = self._deals[self._next % len(self._deals)]
        self._next += 1
        body = json.dumps({"event": EVENT, "id": deal}).encode()
        sent = time.monotonic()
        try:
            response = await self._client.post(PATH, content=body)
        except httpx.HTTPError:
            return Delivery(sent, time.monotonic(), 0, None)
        answered = time.monotonic()
        event = response.json().get("event") if response.status_code == 200 else None
        return Delivery(sent, answered, response.status_code, event)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the Graph side or the identity provider received."""

    at: float
    method: str
    path: str
    status: int | None
    event: str | None
    cpu: float

    @property
    def call(self) -> str:
        """Method and path, ids left out: ``GET /v1.0/users/{id}/todo/lists``."""
        segments = [
            "{id}" if "@" in part or len(part) >= 30 else part
            for part in self.path.split("/")
        ]
        return f"{self.method} {'/'.join(segments)}"


def recorded(folder: Path, name: str) -> list[Recorded]:
    path = folder / name
    if not path.exists():
        return []
    return [
        Recorded(
            at=line["at"],
            method=line["method"],
            path=line["path"],
            status=line.get("status"),
            event=line.get("event"),
            cpu=line["cpu"],
        )
        for line in map(json.loads, path.read_text().splitlines())
    ]


def tasks_by_event(folder: Path) -> dict[str, list[float]]:
    """When the Graph simulator received each event's task creations."""
    found: dict[str, list[float]] = {}
    for request in recorded(folder, GRAPH_RECORD):
        if request.event is not None and request.status == 201:
            found.setdefault(request.event, []).append(request.at)
    return found


async def settle(folder: Path, deliveries: list[Delivery]) -> dict[str, list[float]]:
    """Wait until every accepted delivery's task reached Graph.

    Gives up when no task arrives for ``SETTLE_SECONDS``.
    """
    wanted = {delivery.event for delivery in deliveries if delivery.event}
    seen, progress_at = 0, time.monotonic()
    while True:
        tasks = tasks_by_event(folder)
        if wanted <= tasks.keys():
            return tasks
        if len(tasks) > seen:
            seen, progress_at = len(tasks), time.monotonic()
        elif time.monotonic() - progress_at > SETTLE_SECONDS:
            return tasks
        await asyncio.sleep(0.1)


# -- One database ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    rate: float
    seconds: float
    warmup: float
    deals: int
    poll_seconds: float
    coalesce_seconds: float
    salestrekker_rate: float
    databases: list[str]
    postgres_url: str
    log_level: str
    markdown: bool


@dataclass(slots=True)
class Result:
    """What one database's run measured."""

    database: str
    sent: int  # every delivery, the first one included
    deliveries: int  # measured
    processed: int  # warm-up and measured: what the CPU figures cover
    seconds: float
    latencies: list[float]  # seconds, sorted, of the measured deliveries
    acks: list[float]  # seconds, sorted
    runs_in_period: int
    app_cpu_seconds: float
    simulator_cpu_seconds: float
    identity_requests: int
    graph_requests: int
    calls: Counter[str]  # by side, method and path
    problems: list[str] = field(default_factory=list)

    @property
    def runs_per_second(self) -> float:
        return self.runs_in_period / self.seconds

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def ack_ms(self, fraction: float) -> float:
        return percentile(self.acks, fraction) * 1000

    def per_run(self, value: float) -> float:
        return value / max(self.processed, 1)


class Bench:
    """The load of one database against its brokerhooks process."""

    def __init__(self, options: Options, load: Load, app: Server, folder: Path):
        self._options = options
        self._load = load
        self._app = app
        self._folder = folder

    async def measure(self, database: str) -> Result:
        """Prime with one delivery, then warm up and measure at the rate.

        CPU and simulator figures cover the warm-up and the measured period,
        until the last of their tasks reached Graph.
        """
        options = self._options
        first = await self._load.steady(1, 1)
        await settle(self._folder, first)
        graph_before = len(recorded(self._folder, GRAPH_RECORD))
        identity_before = len(recorded(self._folder, IDENTITY_RECORD))
        cpu_before = self._app.cpu_seconds()

        warmup = await self._load.steady(options.rate, options.warmup)
        start = time.monotonic()
        measured = await self._load.steady(options.rate, options.seconds)
        end = start + options.seconds
        tasks = await settle(self._folder, [*first, *warmup, *measured])
        cpu = self._app.cpu_seconds() - cpu_before

        requests = recorded(self._folder, GRAPH_RECORD)[graph_before:]
        identity = recorded(self._folder, IDENTITY_RECORD)[identity_before:]
        result = Result(
            database=database,
            sent=len(first) + len(warmup) + len(measured),
            deliveries=len(measured),
            processed=len(warmup) + len(measured),
            seconds=options.seconds,
            latencies=sorted(latencies(measured, tasks)),
            acks=sorted(d.answered - d.sent for d in measured if d.status == 200),
            runs_in_period=sum(
                1
                for times in tasks.values()
                for moment in times
                if start <= moment < end
            ),
            app_cpu_seconds=cpu,
            simulator_cpu_seconds=sum(r.cpu for r in [*requests, *identity]),
            identity_requests=len(identity),
            graph_requests=len(requests),
            calls=Counter(
                f"{side} {r.call}"
                for side, records in (("graph", requests), ("identity", identity))
                for r in records
            ),
        )
        result.problems.extend(check_deliveries([*first, *warmup, *measured], tasks))
        return result


def latencies(deliveries: list[Delivery], tasks: dict[str, list[float]]) -> list[float]:
    return [
        tasks[delivery.event][0] - delivery.sent
        for delivery in deliveries
        if delivery.event in tasks
    ]


def check_deliveries(
    deliveries: list[Delivery], tasks: dict[str, list[float]]
) -> list[str]:
    problems = []
    refused = Counter(d.status for d in deliveries if d.status != 200)
    if refused:
        answers = ", ".join(
            f"{n} x {status or 'no answer'}" for status, n in refused.items()
        )
        problems.append(f"deliveries not accepted: {answers}")
    accepted = [d.event for d in deliveries if d.event]
    missing = [event for event in accepted if event not in tasks]
    if missing:
        problems.append(
            f"{len(missing)} of {len(accepted)} deliveries made no task (none came "
            f"for {SETTLE_SECONDS:g} s)"
        )
    twice = [event for event, times in tasks.items() if len(times) > 1]
    if twice:
        problems.append(f"{len(twice)} events made more than one task")
    return problems


def check_store(engine: Engine, deliveries: int) -> list[str]:
    # The benchmark's own counts; they do not belong in store/, which serves
    # the service.
    with transaction(engine) as connection:
        events = dict(
            connection.execute(
                select(Event.status, func.count()).group_by(Event.status)
            ).all()
        )
        actions = dict(
            connection.execute(
                select(ActionRecord.status, func.count()).group_by(ActionRecord.status)
            ).all()
        )
    problems = []
    if events != {"done": deliveries}:
        problems.append(f"events by status {events}; expected {deliveries} done")
    if actions != {"done": deliveries}:
        problems.append(f"actions by status {actions}; expected {deliveries} done")
    return problems


def app_env(
    store: Store, secret_key: str, options: Options, folder: Path
) -> dict[str, str]:
    env = server_env(store, secret_key, options.log_level)
    env.update(
        BROKERHOOKS_POLL_SECONDS=str(options.poll_seconds),
        BROKERHOOKS_COALESCE_SECONDS=str(options.coalesce_seconds),
        BROKERHOOKS_SALESTREKKER_RATE_PER_SECOND=str(options.salestrekker_rate),
        REQUESTS_CA_BUNDLE=str(folder / "simulator-ca.pem"),
    )
    return env


def run_database(
    store: Store, options: Options, salestrekker: Server, deals: list[str], api_key: str
) -> Result:
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as name:
        folder = Path(name)
        secret_key = Fernet.generate_key().decode()
        engine, broker = prepare(
            store, secret_key, api_key, salestrekker_url=salestrekker.url
        )
        identity_port = free_port()
        add_office(engine, secret_key, broker.id, f"https://127.0.0.1:{identity_port}")
        app = Server(
            "app",
            app_env(store, secret_key, options, folder),
            folder,
            module="bench.e2e",
            args=["--identity-port", str(identity_port)],
        )
        try:
            with running(app):
                result = asyncio.run(
                    _measure(store.name, options, app, folder, deals, api_key)
                )
                if result.problems:
                    note(f"the brokerhooks log ends with:\n{app.log_tail()}")
            result.problems.extend(check_store(engine, result.sent))
        finally:
            engine.dispose()
    return result


async def _measure(
    database: str,
    options: Options,
    app: Server,
    folder: Path,
    deals: list[str],
    api_key: str,
) -> Result:
    load = Load(app.url, api_key, deals)
    try:
        return await Bench(options, load, app, folder).measure(database)
    finally:
        await load.aclose()


# -- Report -----------------------------------------------------------------

COLUMNS = (
    "database",
    "poll s",
    "webhooks/s",
    "runs/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "ack p99 ms",
    "CPU ms/run",
    "of it M365 simulator",
    "identity requests/run",
    "one task each",
)


def row(result: Result, options: Options) -> list[str]:
    latencies = result.latencies
    return [
        result.database,
        f"{options.poll_seconds:g}",
        f"{options.rate:g}",
        f"{result.runs_per_second:.1f}",
        f"{result.latency_ms(0.50):,.0f}",
        f"{result.latency_ms(0.99):,.0f}",
        f"{latencies[-1] * 1000:,.0f}" if latencies else "-",
        f"{result.ack_ms(0.99):.1f}",
        f"{result.per_run(result.app_cpu_seconds) * 1000:.1f}",
        f"{result.per_run(result.simulator_cpu_seconds) * 1000:.1f}",
        f"{result.per_run(result.identity_requests):.2f}",
        "NO" if result.problems else f"yes ({result.deliveries:,})",
    ]


def machine(stores: list[Store], options: Options) -> list[str]:
    """Lines that say what the table was measured on."""
    lines = [
        machine_line(),
        f"python: {platform.python_version()}; uvicorn {uvicorn.__version__} "
        f"({LOOP}, {HTTP}), one process with the embedded worker; starlette "
        f"{starlette.__version__}; log level {options.log_level}",
    ]
    lines.extend(
        f"{store.name} {store.version}: {store.durability}" for store in stores
    )
    lines.append(
        f"load: {options.rate:g} webhooks/s ({EVENT}, {options.deals} deals in "
        f"turn) for {options.warmup:g} s of warm-up, then {options.seconds:g} s "
        "measured; one Python asyncio client on the same machine"
    )
    lines.append(
        f"settings: poll_seconds={options.poll_seconds:g} (and woken on each "
        f"commit), coalesce_seconds={options.coalesce_seconds:g}, SalesTrekker "
        f"rate limit {options.salestrekker_rate:g}/s; one rule, a To Do task on "
        f"every {EVENT}"
    )
    lines.append(
        "simulators: SalesTrekker in its own process over loopback HTTP; "
        "Microsoft 365 in the brokerhooks process (Graph in-process, identity "
        "over HTTPS on loopback)"
    )
    lines.append(code_line())
    lines.append(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    return lines


# -- Command line -----------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e",
        description="Latency from a SalesTrekker webhook to the Microsoft Graph "
        "call it causes, on SQLite and PostgreSQL.",
    )
    parser.add_argument(
        "--rate", type=positive(float), default=20.0, help="webhooks per second (20)"
    )
    parser.add_argument(
        "--seconds", type=positive(float), default=30.0, help="measured (30)"
    )
    parser.add_argument(
        "--warmup",
        type=positive(float),
        default=5.0,
        help="seconds at the rate before the measured ones (5)",
    )
    parser.add_argument(
        "--deals", type=positive(int), default=500, help="deals taken in turn (500)"
    )
    poll = float(defaults["poll_seconds"].default)
    parser.add_argument(
        "--poll-seconds",
        type=positive(float),
        default=poll,
        help=f"the worker's poll interval ({poll:g}, the default)",
    )
    window = float(defaults["coalesce_seconds"].default)
    parser.add_argument(
        "--coalesce-seconds",
        type=float,
        default=window,
        help=f"the coalescing window ({window:g}, the default)",
    )
    parser.add_argument(
        "--salestrekker-rate",
        type=positive(float),
        default=1_000_000.0,
        help="the SalesTrekker rate limit per broker, requests/s (1000000: "
        "off; the default setting is 10)",
    )
    add_common_flags(
        parser,
        log_level_help="brokerhooks' BROKERHOOKS_LOG_LEVEL (WARNING: no line per "
        "delivery, run and attempt)",
    )
    # The child processes.
    parser.add_argument(
        "--serve", choices=("app", "salestrekker"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--identity-port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def options_from(arguments: argparse.Namespace) -> Options:
    options = Options(
        rate=arguments.rate,
        seconds=arguments.seconds,
        warmup=arguments.warmup,
        deals=int(arguments.deals),
        poll_seconds=arguments.poll_seconds,
        coalesce_seconds=max(arguments.coalesce_seconds, 0.0),
        salestrekker_rate=arguments.salestrekker_rate,
        databases=arguments.databases,
        postgres_url=arguments.postgres_url,
        log_level=arguments.log_level,
        markdown=arguments.markdown,
    )
    if options.deals / options.rate <= options.coalesce_seconds:
        raise BenchError(
            f"--deals {options.deals} at --rate {options.rate:g} brings a deal back "
            f"within the {options.coalesce_seconds:g} s coalescing window, and some "
            "deliveries would be folded into later ones; raise --deals or lower "
            "--coalesce-seconds"
        )
    return options


def run(options: Options) -> int:
    api_key = secrets.token_hex(20)
    results: list[Result] = []
    stores: list[Store] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as name:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, SALESTREKKER_KEY_VARIABLE: api_key}
        salestrekker = Server("salestrekker", env, Path(name), module="bench.e2e")
        with running(salestrekker):
            deals = asyncio.run(add_deals(salestrekker.url, options.deals))
            for database in options.databases:
                try:
                    with open_store(database, options.postgres_url) as store:
                        stores.append(store)
                        result = run_database(
                            store, options, salestrekker, deals, api_key
                        )
                except Unreachable as error:
                    skipped.append(f"{database}: skipped, {error}")
                    note(f"{database} skipped: {error}")
                    continue
                results.append(result)
                report(result)

    if not results:
        note("error: nothing was measured")
        return 1
    header = machine(stores, options) + skipped
    table = [row(result, options) for result in results]
    print(render_table(header, COLUMNS, table, markdown=options.markdown))
    problems = [f"{r.database}: {p}" for r in results for p in r.problems]
    for problem in problems:
        note("FAILED " + problem)
    return 1 if problems else 0


def report(result: Result) -> None:
    note(
        f"{result.database}: {result.deliveries} deliveries measured, "
        f"{result.runs_per_second:.1f} runs/s, latency p50 "
        f"{result.latency_ms(0.5):.0f} ms p99 {result.latency_ms(0.99):.0f} ms, "
        f"CPU {result.per_run(result.app_cpu_seconds) * 1000:.1f} ms/run, "
        f"{result.per_run(result.graph_requests):.2f} Graph and "
        f"{result.per_run(result.identity_requests):.2f} identity requests/run"
    )
    for call, count in result.calls.most_common():
        note(f"  {result.per_run(count):.2f}/run {call}")
    for problem in result.problems:
        note(f"FAILED {result.database}: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    if arguments.serve == "app":
        _serve_app(arguments.port, arguments.identity_port)
        return 0
    if arguments.serve == "salestrekker":
        _serve_salestrekker(arguments.port)
        return 0
    try:
        return run(options_from(arguments))
    except BenchError as error:
        note(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Ingest: the durable SalesTrekker endpoint against a no-op route.

Two servers run side by side on the same stack (Starlette on uvicorn, one
process each, uvloop and httptools when installed, the options of
``brokerhooks serve``): the real app as ``brokerhooks serve --no-worker``
builds it, whose ``POST /hooks/salestrekker`` authenticates, validates and
commits each delivery before answering, and a no-op app whose route of the
same path only reads the body and sends the same 200 JSON. (The embedded
worker is left out: its cost belongs to the drain benchmark.)

A third server, the ceiling, is the real app with its group writer's commit
skipped: every delivery is authenticated, validated and handed to the writer
thread, and answered when the writer says so, but nothing is written. It is
what any store could at best give, and so bounds the ratio any store design
can reach on this stack and machine. It is a benchmark device only: nothing
in the service can build it.

A separate load-generator process (wrk with a Lua script when installed,
else a Python client) loads them in turn, durable, no-op, ceiling, for
``--rounds`` pairs at each ``--connections`` count, on SQLite (WAL,
``synchronous=FULL``, a temporary file) and on PostgreSQL (a temporary
database). Every delivery carries a fresh UUID.

The figure that matters is the ratio of the two throughputs, the median of
the paired rounds: the disk's flush rate swings with the neighbours' I/O, so
only runs taken side by side can be compared.

After each durable round the store must hold one new event per 200 answer.
A mismatch, or any answer other than 200, fails the run.

    .venv/bin/python -m bench.ingest [--seconds 5] [--rounds 3]
        [--connections 16,64] [--databases sqlite,postgresql] [--markdown]

Exit status: 0 when every round passed its checks, 1 when one did not or
the servers could not be started, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import starlette
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.common import (
    HTTP,
    LOOP,
    ROOT,
    BenchError,
    Server,
    Store,
    Unreachable,
    add_common_flags,
    machine_line,
    note,
    open_store,
    percentile,
    positive,
    prepare,
    running,
    serve,
    server_env,
)
from brokerhooks.app import ALL_METHODS, create_app, healthz
from brokerhooks.config import Settings, load_settings
from brokerhooks.interpreter import prepare_to_serve
from brokerhooks.logs import configure_logging
from brokerhooks.runtime import Runtime
from brokerhooks.store.database import transaction
from brokerhooks.store.events import EVENTS
from brokerhooks.store.writer import Errors, GroupWriter, Write

PATH = "/hooks/salestrekker"
EVENT = "dealChangesStage"
# The no-op answer has the shape and size of the durable one.
NOOP_ANSWER = {"status": "accepted", "event": "00000000-0000-7000-8000-000000000000"}
# Seconds wrk runs past the deadline so that in-flight deliveries are answered.
DRAIN_SECONDS = 1


# -- The no-op app and the server processes ---------------------------------


async def noop_receive(request: Request) -> Response:
    """Read the body and answer as the durable endpoint does; nothing else."""
    await request.body()
    return JSONResponse(NOOP_ANSWER)


def noop_app() -> Starlette:
    """The baseline: the same app type and path, no authentication, no store."""
    return Starlette(
        routes=[
            Route(PATH, noop_receive, methods=ALL_METHODS),
            Route("/healthz", healthz),
        ]
    )


class UncommittedWriter(GroupWriter):
    """The group writer, thread and hand-over included, minus the commit."""

    def _commit(self, writes: Sequence[Write]) -> Errors | None:
        return None


def ceiling_app(settings: Settings) -> Starlette:
    """The real app whose writer acknowledges without writing."""
    runtime = Runtime.build(settings)
    runtime.writer = UncommittedWriter(
        runtime.engine, batch_max=settings.write_batch_max
    )
    return create_app(settings, runtime)


def _serve_child(role: str, port: int) -> None:
    """Entry point of a server process; settings come from the environment.

    The durable app is built as ``brokerhooks serve --no-worker`` builds it,
    and every server's interpreter is prepared as ``serve`` prepares it.
    """
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    if role == "durable":
        app = create_app(settings)
    elif role == "ceiling":
        app = ceiling_app(settings)
    else:
        app = noop_app()
    prepare_to_serve(settings)
    serve(app, settings, port)


def _child_command() -> list[str]:
    return [sys.executable, "-m", "bench.ingest"]


def count_events(engine: Engine) -> int:
    # A count is the only query the benchmark needs; it does not belong in
    # store/, which serves the service.
    with transaction(engine) as connection:
        return int(connection.scalar(select(func.count()).select_from(EVENTS)) or 0)


# -- Load generators --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """What a load generator saw in one round."""

    accepted: int  # 200 answers
    refused: int  # answers other than 200
    errors: int  # connection errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float


LoadGenerator = Callable[[str, str, int, float], Load]

# Past the deadline each connection sends the head of a request without its
# final blank line: the server waits for the rest and never answers, so the
# connection falls silent once its last delivery is answered. wrk runs on
# for DRAIN_SECONDS; when it stops, every delivery sent has been answered and
# the count of 200 answers can be compared with the store. (wrk's delay()
# hook would do the same, but costs a timer and two epoll calls per request.)
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, timespec)  -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local threads = {}
local headers = {["Content-Type"] = "application/json"}
local started, deadline = now(), math.huge
local unfinished = "GET /healthz HTTP/1.1\\r\\nHost: bench\\r\\n"
accepted, refused, elapsed = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end

function init(args)
  headers["Authorization"] = "Salestrekker " .. args[2]
  math.randomseed(os.time() + 7919 * (number or 0))
  started = now()
  deadline = started + tonumber(args[1])
end

local function uuid4()
  local r = math.random
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    r(0, 0xffffffff), r(0, 0xffff), r(0, 0xfff), r(0x8000, 0xbfff),
    r(0, 0xffff), r(0, 0xffffffff))
end

function request()
  if now() >= deadline then return unfinished end
  local body = '{"event": "__EVENT__", "id": "' .. uuid4() .. '"}'
  return wrk.format("POST", "__PATH__", headers, body)
end

function response(status, response_headers, body)
  if status == 200 then accepted = accepted + 1 else refused = refused + 1 end
  elapsed = now() - started
end

function done(summary, latency, requests)
  local total = {accepted = 0, refused = 0, elapsed = 0}
  for _, thread in ipairs(threads) do
    total.accepted = total.accepted + thread:get("accepted")
    total.refused = total.refused + thread:get("refused")
    total.elapsed = math.max(total.elapsed, thread:get("elapsed"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"accepted": %d, "refused": %d, "errors": %d, "seconds": %.6f, '
      .. '"p50_ms": %.3f, "p99_ms": %.3f}\\n',
    total.accepted, total.refused, e.connect + e.read + e.write + e.timeout,
    total.elapsed, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
""".replace("__EVENT__", EVENT).replace("__PATH__", PATH)


class WrkLoad:
    """wrk, one thread, keep-alive, a fresh UUID per delivery."""

    def __init__(self, folder: Path) -> None:
        self._script = folder / "ingest.lua"
        self._script.write_text(WRK_SCRIPT)

    @staticmethod
    def version() -> str:
        # `wrk -v` prints its version and the usage, and exits with 1.
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        words = (done.stdout + done.stderr).split()
        return f"wrk {words[1].rsplit('/', 1)[-1]}" if len(words) > 1 else "wrk"

    def __call__(
        self, url: str, api_key: str, connections: int, seconds: float
    ) -> Load:
        duration = math.ceil(seconds) + DRAIN_SECONDS
        command = [
            "wrk",
            "--threads=1",
            f"--connections={connections}",
            f"--duration={duration}s",
            "--timeout=30s",
            f"--script={self._script}",
            url + PATH,
            "--",
            str(seconds),
            api_key,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60
        )
        for line in done.stdout.splitlines():
            if line.startswith("BENCH "):
                return Load(**json.loads(line.removeprefix("BENCH ")))
        raise BenchError(f"wrk gave no result:\n{done.stdout}{done.stderr}")


class PythonLoad:
    """A keep-alive asyncio client in a child process, when wrk is missing."""

    @staticmethod
    def version() -> str:
        return f"Python asyncio client ({LOOP}), one process"

    def __call__(
        self, url: str, api_key: str, connections: int, seconds: float
    ) -> Load:
        command = [
            *_child_command(),
            "--load",
            url,
            "--connections",
            str(connections),
            "--seconds",
            str(seconds),
            "--key",
            api_key,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=seconds + 60
        )
        if done.returncode != 0:
            raise BenchError(f"the load generator failed:\n{done.stderr}")
        return Load(**json.loads(done.stdout))


def _load_child(url: str, api_key: str, connections: int, seconds: float) -> None:
    """Entry point of the Python load generator: one JSON line on stdout."""
    if LOOP == "uvloop":
        policy = importlib.import_module("uvloop").EventLoopPolicy()
        asyncio.set_event_loop_policy(policy)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    load = asyncio.run(_load(host, int(port), api_key, connections, seconds))
    print(json.dumps(dataclasses.asdict(load)))


async def _load(
    host: str, port: int, api_key: str, connections: int, seconds: float
) -> Load:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Salestrekker {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    template = b'{"event": "%s", "id": "%s"}' % (EVENT.encode(), b"%s")
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0

    async def connection() -> None:
        nonlocal errors
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors += 1
            return
        try:
            while time.monotonic() < deadline:
                body = template % str(uuid.uuid4()).encode()
                sent = time.perf_counter()
                writer.write(head + b"%d\r\n\r\n" % len(body) + body)
                status, length = _response_head(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started

    latencies.sort()
    return Load(
        accepted=statuses[200],
        refused=sum(statuses.values()) - statuses[200],
        errors=errors,
        seconds=elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def _response_head(head: bytes) -> tuple[int, int]:
    """Status and Content-Length of a response head; ValueError if absent."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise ValueError("response without Content-Length")


# -- Rounds -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One round on one server."""

    load: Load
    cpu_seconds: float
    stored: int | None = None  # new events in the store, durable rounds only

    @property
    def rate(self) -> float:
        return self.load.accepted / self.load.seconds if self.load.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / max(self.load.accepted, 1) * 1e6

    def problems(self) -> list[str]:
        found = []
        if self.load.refused:
            found.append(f"{self.load.refused} answers other than 200")
        if self.load.errors:
            found.append(f"{self.load.errors} connection errors or timeouts")
        if self.stored is not None and self.stored != self.load.accepted:
            found.append(
                f"{self.load.accepted} answers of 200 but {self.stored} new "
                "events in the store"
            )
        return found


@dataclass(slots=True)
class Series:
    """The paired rounds at one database and connection count."""

    database: str
    connections: int
    durable: list[Sample] = field(default_factory=list)
    noop: list[Sample] = field(default_factory=list)
    ceiling: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ratios(self, samples: list[Sample]) -> list[float]:
        """Each round's rate of ``samples`` over the no-op's in that round."""
        return [
            sample.rate / noop.rate
            for sample, noop in zip(samples, self.noop, strict=True)
            if noop.rate
        ]


@dataclass(slots=True)
class Options:
    seconds: float
    rounds: int
    warmup: float
    connections: list[int]
    databases: list[str]
    postgres_url: str
    markdown: bool
    load_generator: str
    log_level: str


class Bench:
    """Runs the paired rounds of one database against its two servers."""

    def __init__(
        self,
        options: Options,
        load: LoadGenerator,
        api_key: str,
        engine: Engine,
        database: str,
    ) -> None:
        self._options = options
        self._load = load
        self._api_key = api_key
        self._engine = engine
        self._database = database

    def series(
        self, durable: Server, noop: Server, ceiling: Server, connections: int
    ) -> Series:
        series = Series(self._database, connections)
        servers = (
            (durable, series.durable),
            (noop, series.noop),
            (ceiling, series.ceiling),
        )
        if self._options.warmup > 0:
            for server, _ in servers:
                sample = self._round(server, connections, self._options.warmup)
                self._report(series, "warm-up", server, sample)

        for number in range(1, self._options.rounds + 1):
            label = f"round {number}/{self._options.rounds}"
            for server, samples in servers:
                sample = self._round(server, connections, self._options.seconds)
                samples.append(sample)
                self._report(series, label, server, sample)
        return series

    def _round(self, server: Server, connections: int, seconds: float) -> Sample:
        durable = server.role == "durable"
        before = count_events(self._engine) if durable else 0
        cpu_before = server.cpu_seconds()
        load = self._load(server.url, self._api_key, connections, seconds)
        cpu = server.cpu_seconds() - cpu_before
        stored = count_events(self._engine) - before if durable else None
        return Sample(load, cpu, stored)

    def _report(
        self, series: Series, label: str, server: Server, sample: Sample
    ) -> None:
        handler = HANDLERS[server.role]
        check = ""
        if sample.stored is not None:
            check = f", 200 answers {sample.load.accepted:,} / events stored "
            check += f"{sample.stored:,}"
        note(
            f"{series.database} c={series.connections} {label} {handler}: "
            f"{sample.rate:,.0f}/s, p99 {sample.load.p99_ms:.1f} ms, "
            f"CPU {sample.cpu_us:.0f} us/req{check}"
        )
        for problem in sample.problems():
            message = f"{series.database} c={series.connections} {label} "
            message += f"{handler}: {problem}"
            series.problems.append(message)
            note("FAILED " + message)
        if sample.problems():
            note(f"the {handler} server's log ends with:\n{server.log_tail()}")


def run_database(
    store: Store, options: Options, load: LoadGenerator, folder: Path
) -> list[Series]:
    secret_key = Fernet.generate_key().decode()
    api_key = secrets.token_hex(20)
    engine, _ = prepare(store, secret_key, api_key)
    env = server_env(store, secret_key, options.log_level)
    bench = Bench(options, load, api_key, engine, store.name)
    try:
        durable = Server("durable", env, folder, module="bench.ingest")
        noop = Server("noop", env, folder, module="bench.ingest")
        ceiling = Server("ceiling", env, folder, module="bench.ingest")
        with running(durable), running(noop), running(ceiling):
            return [
                bench.series(durable, noop, ceiling, connections)
                for connections in options.connections
            ]
    finally:
        engine.dispose()


# -- Report -----------------------------------------------------------------

COLUMNS = (
    "database",
    "connections",
    "handler",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "CPU µs/req",
    "of no-op",
    "events = 200s",
)
HANDLERS = {"durable": "durable", "noop": "no-op", "ceiling": "ceiling"}


def rows(series: Series) -> list[list[str]]:
    answered = sum(sample.load.accepted for sample in series.durable)
    stored = sum(sample.stored or 0 for sample in series.durable)
    check = (
        f"yes ({stored:,})" if answered == stored else f"NO ({stored:,}/{answered:,})"
    )
    return [
        _row(series, "durable", series.durable, _ratio(series, series.durable), check),
        _row(series, "no-op", series.noop, "", ""),
        _row(series, "ceiling", series.ceiling, _ratio(series, series.ceiling), ""),
    ]


def _ratio(series: Series, samples: list[Sample]) -> str:
    """The median of the rounds' ratios to the no-op, and their range."""
    ratios = series.ratios(samples)
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _row(
    series: Series, handler: str, samples: list[Sample], ratio: str, check: str
) -> list[str]:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    return [
        series.database,
        str(series.connections),
        handler,
        f"{median([sample.rate for sample in samples]):,.0f}",
        f"{median([sample.load.p50_ms for sample in samples]):.1f}",
        f"{median([sample.load.p99_ms for sample in samples]):.1f}",
        f"{median([sample.cpu_us for sample in samples]):.0f}",
        ratio,
        check,
    ]


def machine(stores: list[Store], options: Options, load_version: str) -> list[str]:
    """Lines that say what the table was measured on."""
    lines = [
        machine_line(),
        f"python: {platform.python_version()}; uvicorn {uvicorn.__version__} "
        f"({LOOP}, {HTTP}), one process; starlette {starlette.__version__}; "
        f"log level {options.log_level}",
    ]
    lines.extend(
        f"{store.name} {store.version}: {store.durability}" for store in stores
    )
    lines.append(
        f"load: {load_version} on the same machine, keep-alive, a fresh UUID per "
        f"delivery; paired rounds: {options.rounds} x {options.seconds:g} s "
        f"per server, after {options.warmup:g} s of warm-up"
    )
    lines.append(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    return lines


def render(header: list[str], table: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [f"- {line}" for line in header] + [""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append(
            "|" + "|".join(_markdown_rule(index) for index in range(len(COLUMNS))) + "|"
        )
        lines.extend("| " + " | ".join(row) + " |" for row in table)
        return "\n".join(lines)

    widths = [
        max(len(row[index]) for row in [list(COLUMNS), *table])
        for index in range(len(COLUMNS))
    ]
    lines = [*header, ""]
    for row in [list(COLUMNS), *table]:
        cells = [
            cell.ljust(width) if index < 3 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _markdown_rule(index: int) -> str:
    return "---" if index in (0, 2) else "---:"


# -- Command line -----------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="Throughput of the durable ingest endpoint against a no-op "
        "route on the same server, on SQLite and PostgreSQL.",
    )
    parser.add_argument(
        "--seconds", type=positive(float), default=5.0, help="per round (5)"
    )
    parser.add_argument(
        "--rounds", type=positive(int), default=3, help="paired rounds (3)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of warm-up per server and connection count, 0 for none (1)",
    )
    parser.add_argument(
        "--connections",
        type=_connection_counts,
        default=[16, 64],
        help="comma-separated (16,64)",
    )
    parser.add_argument(
        "--load-generator", choices=("auto", "wrk", "python"), default="auto"
    )
    add_common_flags(
        parser,
        log_level_help="the servers' BROKERHOOKS_LOG_LEVEL (WARNING: no line per "
        "delivery)",
    )
    # The child processes: a server, or the Python load generator.
    parser.add_argument("--serve", choices=tuple(HANDLERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _connection_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a list of positive numbers, e.g. 16,64"
        )
    return counts


def options_from(arguments: argparse.Namespace) -> Options:
    return Options(
        seconds=arguments.seconds,
        rounds=int(arguments.rounds),
        warmup=max(arguments.warmup, 0.0),
        connections=arguments.connections,
        databases=arguments.databases,
        postgres_url=arguments.postgres_url,
        markdown=arguments.markdown,
        load_generator=arguments.load_generator,
        log_level=arguments.log_level,
    )


def pick_load(options: Options, folder: Path) -> tuple[LoadGenerator, str]:
    wanted = options.load_generator
    if wanted == "wrk" or (wanted == "auto" and shutil.which("wrk")):
        if not shutil.which("wrk"):
            raise BenchError("--load-generator wrk: wrk is not installed")
        return WrkLoad(folder), WrkLoad.version()
    if wanted == "auto":
        note("wrk not found (apt-get install wrk); using the Python load generator")
    return PythonLoad(), PythonLoad.version()


def run(options: Options) -> int:
    stores: list[Store] = []
    results: list[Series] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as name:
        folder = Path(name)
        load, load_version = pick_load(options, folder)
        for database in options.databases:
            try:
                with open_store(database, options.postgres_url) as store:
                    stores.append(store)
                    results.extend(run_database(store, options, load, folder))
            except Unreachable as error:
                skipped.append(f"{database}: skipped, {error}")
                note(f"{database} skipped: {error}")

    if not results:
        note("error: nothing was measured")
        return 1
    table = [row for series in results for row in rows(series)]
    header = machine(stores, options, load_version) + skipped
    print(render(header, table, options.markdown))
    problems = [problem for series in results for problem in series.problems]
    for problem in problems:
        note("FAILED " + problem)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    if arguments.serve:
        _serve_child(arguments.serve, arguments.port)
        return 0
    if arguments.load:
        _load_child(
            arguments.load, arguments.key, arguments.connections[0], arguments.seconds
        )
        return 0
    try:
        return run(options_from(arguments))
    except BenchError as error:
        note(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: stores, server processes, the machine, tables.

Each benchmark runs on a temporary SQLite file and a temporary PostgreSQL
database (skipped, with the reason, when the server cannot be reached),
migrated, with one broker. Servers run in child processes of the benchmark,
started with ``python -m bench.<name> --serve <role> --port <port>``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import IO

import httpx
import uvicorn
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette

from brokerhooks.config import Settings, load_settings
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import brokers, migrate
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.database import make_engine, transaction

LOOP = "uvloop" if find_spec("uvloop") else "asyncio"
HTTP = "httptools" if find_spec("httptools") else "h11"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]
BENCH_SALESTREKKER_URL = "https://bench.salestrekker.com"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class Unreachable(Exception):
    """A database the benchmark should skip; the message says why."""


# -- Stores -----------------------------------------------------------------


@dataclass(slots=True)
class Store:
    name: str
    url: str
    version: str
    durability: str


@contextmanager
def sqlite_store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="brokerhooks-bench-") as folder:
        yield Store(
            "SQLite",
            f"sqlite:///{folder}/bench.db",
            sqlite3.sqlite_version,
            "WAL, synchronous=FULL, file in " + tempfile.gettempdir(),
        )


@contextmanager
def postgres_store(admin_url: str) -> Iterator[Store]:
    """A temporary database, dropped at the end; Unreachable if the server is down."""
    url = "postgresql+psycopg://" + admin_url.split("://", 1)[1]
    name = f"brokerhooks_bench_{os.getpid()}"
    admin = create_engine(
        url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as connection:
            version = str(connection.scalar(text("SHOW server_version")))
            commit = str(connection.scalar(text("SHOW synchronous_commit")))
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        reason = str(error.orig).strip().splitlines()[0]
        raise Unreachable(f"{admin_url} is not reachable ({reason})") from None

    try:
        yield Store(
            "PostgreSQL",
            url.rsplit("/", 1)[0] + f"/{name}",
            version.split()[0],
            f"synchronous_commit={commit}",
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" (FORCE)'))
        admin.dispose()


def open_store(database: str, postgres_url: str) -> AbstractContextManager[Store]:
    """``database`` is ``sqlite`` or ``postgresql``."""
    if database == "sqlite":
        return sqlite_store()
    return postgres_store(postgres_url)


def prepare(
    store: Store,
    secret_key: str,
    api_key: str,
    *,
    salestrekker_url: str = BENCH_SALESTREKKER_URL,
) -> tuple[Engine, BrokerRecord]:
    """Migrate the store and add the broker the benchmark acts for."""
    settings = load_settings(
        database_url=store.url, secret_keys=secret_key, env="production"
    )
    engine = make_engine(settings)
    migrate.upgrade(engine)
    vault = Vault(settings.fernet_keys)
    key = Secret(api_key)
    with transaction(engine, write=True) as connection:
        broker = brokers.create_broker(
            connection,
            name="bench",
            salestrekker_url=salestrekker_url,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )
    return engine, broker


def server_env(store: Store, secret_key: str, log_level: str) -> dict[str, str]:
    """The production settings, and nothing inherited that could change them."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BROKERHOOKS_")
    }
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        PYTHONPATH=path,
        BROKERHOOKS_DATABASE_URL=store.url,
        BROKERHOOKS_SECRET_KEYS=secret_key,
        BROKERHOOKS_ENV="production",
        BROKERHOOKS_LOG_FORMAT="json",
        BROKERHOOKS_LOG_LEVEL=log_level,
    )
    return env


# -- Server processes -------------------------------------------------------


def serve(app: Starlette, settings: Settings, port: int) -> None:
    """Run ``app`` with the options of ``brokerhooks serve``, loop and parser pinned."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop=LOOP,
        http=HTTP,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )


class Server:
    """One server process on a free loopback port.

    It runs ``python -m <module> --serve <role> --port <port> <args>`` and is
    ready when ``ready_path`` answers 200.
    """

    def __init__(
        self,
        role: str,
        env: dict[str, str],
        folder: Path,
        *,
        module: str,
        args: Sequence[str] = (),
        ready_path: str = "/healthz",
    ) -> None:
        self.role = role
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{role}.log"
        self._env = env
        self._folder = folder
        self._command = [
            sys.executable,
            "-m",
            module,
            "--serve",
            role,
            "--port",
            str(self.port),
            *args,
        ]
        self._ready_path = ready_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self._command,
            env=self._env,
            cwd=self._folder,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._wait_until_ready()

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process so far, all threads."""
        assert self._process is not None
        return process_cpu_seconds(self._process.pid)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                answer = httpx.get(self.url + self._ready_path, timeout=1)
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise BenchError(
            f"the {self.role} server did not start; its log ends with:\n"
            + self.log_tail()
        )


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def process_cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU time of a process (this one by default), all threads."""
    stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- Report -----------------------------------------------------------------


def machine_line() -> str:
    """The first line of every header: CPU, cores, kernel."""
    cpus = len(os.sched_getaffinity(0))
    return f"machine: {cpu_model()}, {cpus} cores, Linux {platform.release()}"


def code_line() -> str:
    """Which code was measured: the commit, and whether the tree had changes."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "code: unknown (git not available)"
    described = done.stdout.strip() or "unknown"
    if described.endswith("-dirty"):
        described = described.removesuffix("-dirty") + " with uncommitted changes"
    return f"code: {described}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render_table(
    header: list[str],
    columns: Sequence[str],
    table: list[list[str]],
    *,
    markdown: bool,
    left: Collection[int] = (0,),
) -> str:
    """The header lines and the table; columns not in ``left`` align right."""
    if markdown:
        lines = [f"- {line}" for line in header] + [""]
        lines.append("| " + " | ".join(columns) + " |")
        rules = ("---" if index in left else "---:" for index in range(len(columns)))
        lines.append("|" + "|".join(rules) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in table)
        return "\n".join(lines)

    widths = [
        max(len(row[index]) for row in [list(columns), *table])
        for index in range(len(columns))
    ]
    lines = [*header, ""]
    for row in [list(columns), *table]:
        cells = [
            cell.ljust(width) if index in left else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- Flags ------------------------------------------------------------------


def positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    def convert(value: str) -> float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value} is not above 0")
        return number

    convert.__name__ = kind.__name__
    return convert


def positive_list(example: str) -> Callable[[str], list[int]]:
    """A flag's type: comma-separated positive numbers, e.g. ``example``."""

    def convert(value: str) -> list[int]:
        try:
            counts = [int(part) for part in value.split(",")]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a list of positive numbers, e.g. {example}"
            )
        return counts

    return convert


def database_names(value: str) -> list[str]:
    names = [part.strip().lower() for part in value.split(",")]
    unknown = sorted(set(names) - {"sqlite", "postgresql"})
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown)}; choose from sqlite,postgresql"
        )
    return names


def add_common_flags(
    parser: argparse.ArgumentParser, *, log_level_help: str | None = None
) -> None:
    """The flags every benchmark takes: databases, where PostgreSQL is, output.

    With ``log_level_help``, also ``--log-level`` (WARNING unless given).
    """
    parser.add_argument(
        "--databases",
        type=database_names,
        default=["sqlite", "postgresql"],
        help="comma-separated (sqlite,postgresql)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_ADMIN_URL,
        help="a server where a temporary database may be created "
        f"({POSTGRES_ADMIN_URL})",
    )
    if log_level_help is not None:
        parser.add_argument(
            "--log-level",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            default="WARNING",
            help=log_level_help,
        )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown"
    )

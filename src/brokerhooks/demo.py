"""``brokerhooks demo``: the whole service on one machine, with stand-ins.

Starts, in one process: brokerhooks (ingest and a worker) on a fresh SQLite
database, the SalesTrekker simulator, and a demo broker whose API key the
simulator sends with its webhooks. Then it plays a home loan's journey in
the simulator (created, stages, a note, a settlement date, settled), prints
each event as brokerhooks stores and processes it, and keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import uvicorn
from sqlalchemy import Engine, select

from brokerhooks.app import create_app
from brokerhooks.config import Settings, load_settings
from brokerhooks.pipeline.service import build_worker
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator, seed
from brokerhooks.store import brokers, migrate
from brokerhooks.store.database import make_engine, transaction
from brokerhooks.store.models import Event

BROKER = "demo"
PENDING = ("received", "processing")


@dataclass
class Demo:
    folder: Path
    port: int
    simulator_port: int
    pause: float
    settings: Settings = field(init=False)
    engine: Engine = field(init=False)
    simulator: SalesTrekkerSimulator = field(init=False)
    seen: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    def prepare(self) -> None:
        """A fresh database with the demo broker; the simulator that feeds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        database = self.folder / "brokerhooks.db"
        for stale in self.folder.glob("brokerhooks.db*"):
            stale.unlink()
        self.settings = load_settings(
            database_url=f"sqlite:///{database}",
            public_url=self.url,
            poll_seconds=0.2,
            coalesce_seconds=0.0,
        )
        self.engine = make_engine(self.settings)
        migrate.upgrade(self.engine)
        api_key = secrets.token_hex(20)
        runtime = Runtime.build(self.settings, self.engine)
        with transaction(self.engine, write=True) as connection:
            brokers.create_broker(
                connection,
                name=BROKER,
                salestrekker_url=self.simulator_url,
                api_key_encrypted=runtime.vault.encrypt(Secret(api_key)),
                api_key_hash=runtime.vault.lookup_hash(Secret(api_key)),
            )
        self.simulator = SalesTrekkerSimulator(
            api_key, webhook_url=f"{self.url}/hooks/salestrekker"
        )
        self.runtime = runtime

    async def run(self, *, serve: bool) -> bool:
        """Play the journey; keep serving if asked. True if all went well."""
        worker = build_worker(self.engine, self.settings, metrics=self.runtime.metrics)
        app = create_app(self.settings, self.runtime, worker)
        servers = [
            _server(app, self.port),
            _server(self.simulator.app, self.simulator_port),
        ]
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                raise click.ClickException(
                    f"could not listen on port {self.port} or {self.simulator_port}; "
                    "choose others with --port and --simulator-port"
                )
            await asyncio.sleep(0.05)
        click.echo(f"brokerhooks on {self.url}  (database {self.folder})")
        click.echo(f"SalesTrekker simulator on {self.simulator_url}")
        click.echo(f"broker {BROKER!r}: webhooks go to {self.url}/hooks/salestrekker")
        click.echo("")

        ok = await self._journey()
        if serve:
            click.echo("")
            click.echo(f"Serving at {self.url}. Try: brokerhooks events list")
            click.echo(
                f"  (with BROKERHOOKS_DATABASE_URL=sqlite:///"
                f"{self.folder / 'brokerhooks.db'})  Ctrl-C stops."
            )
            await asyncio.gather(*tasks)
        else:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks)
        return ok

    async def _journey(self) -> bool:
        sim = self.simulator
        stages = seed.HOME_LOAN_STAGES
        steps: list[tuple[str, Callable[[str], Awaitable[Any]]]] = [
            *[
                (f"move to {stage}", lambda deal, s=stage: sim.move_deal(deal, s))
                for stage in stages[1:4]
            ],
            (
                "write a note",
                lambda deal: sim.add_note(deal, "Lodged; valuation ordered."),
            ),
            *[
                (f"move to {stage}", lambda deal, s=stage: sim.move_deal(deal, s))
                for stage in stages[4:6]
            ],
            (
                "book settlement in 4 weeks",
                lambda deal: sim.set_due_date(deal, date.today() + timedelta(days=28)),
            ),
            *[
                (f"move to {stage}", lambda deal, s=stage: sim.move_deal(deal, s))
                for stage in stages[6:]
            ],
            ("mark won", lambda deal: sim.set_status(deal, "won")),
        ]
        click.echo("SalesTrekker: create deal 'Citizen refinance'")
        deal = await sim.create_deal(
            "Citizen refinance", contact_id=seed.JANE_ID, value=720000
        )
        await self._settle()
        for label, step in steps:
            await asyncio.sleep(self.pause)
            click.echo(f"SalesTrekker: {label}")
            await step(deal)
            await self._settle()
        return all(status == "done" for status in self.seen.values())

    async def _settle(self, timeout: float = 30.0) -> None:
        """Wait for the simulator's webhooks and their processing; print them."""
        await self.simulator.flush()
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            rows = await asyncio.to_thread(self._events)
            for row in rows:
                if self.seen.get(row["id"]) != row["status"]:
                    self.seen[row["id"]] = row["status"]
                    click.echo(_describe(row))
            if all(row["status"] not in PENDING for row in rows):
                return
            await asyncio.sleep(0.1)

    def _events(self) -> list[dict[str, Any]]:
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(
                    Event.id,
                    Event.type,
                    Event.status,
                    Event.changes,
                    Event.status_reason,
                ).order_by(Event.id)
            ).all()
        return [dict(row._mapping) for row in rows]


def _describe(row: dict[str, Any]) -> str:
    text = f"  event {row['type']:<22} {row['status']:<15}"
    changes = json.loads(row["changes"]) if row["changes"] else {}
    parts = []
    for name, change in changes.items():
        before, after = (_readable(name, change[end]) for end in ("from", "to"))
        parts.append(f"{name}: {before} → {after}")
    if parts:
        text += "  " + "; ".join(parts)
    if row["status_reason"] and row["status"] not in PENDING:
        text += f"  ({row['status_reason']})"
    return text


def _readable(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("name")
    if name == "due_date" and isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC).date().isoformat()
    return value


def _server(app: Any, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    return uvicorn.Server(config)

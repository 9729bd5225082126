"""``brokerhooks demo``: the whole service on one machine, with stand-ins.

Starts, in one process: brokerhooks (ingest and a worker) on a fresh SQLite
database, the SalesTrekker simulator, the Microsoft 365 simulator (its
identity provider over HTTPS with a throwaway CA, so that msal runs as it
would against Entra ID), and a demo broker with an app-only Microsoft 365
connection and the recipes as its rules. Then it plays a home loan's
journey in SalesTrekker (created, stages, a note, a settlement date,
settled), prints each event, run and action as it happens, and keeps
serving.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from brokerhooks.connectors.msgraph.subscriptions import SubscriptionService
from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.pipeline.service import build_worker
from brokerhooks.rules.recipes import get_recipe
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.msgraph import (
    LoopbackCertificates,
    MicrosoftGraphSimulator,
    make_loopback_certificates,
)
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator, seed
from brokerhooks.store import brokers, migrate
from brokerhooks.store.connections import create_m365_connection, mark_m365_connected
from brokerhooks.store.database import make_engine, transaction
from brokerhooks.store.models import M365_APP_ONLY, ActionRecord, Event
from brokerhooks.store.types import utcnow

BROKER = "demo"
PENDING = ("received", "processing")
MAILBOX = "broker@harbour.example"
CLIENT_ID = "00000000-0000-4000-8000-00000000d3m0"
TENANT_ID = "00000000-0000-4000-8000-0000000ten0"
# The recipes the demo broker starts with, and their parameters.
DEMO_RECIPES: tuple[tuple[str, dict[str, str]], ...] = (
    ("client-folder", {}),
    ("stage-task", {"stage": "6. Approved"}),
    ("note-mail", {"to": MAILBOX}),
    ("due-date-calendar", {}),
    ("documents-note", {}),
    ("client-mail-note", {}),
    ("task-done-note", {}),
)


@dataclass
class Demo:
    folder: Path
    port: int
    simulator_port: int
    graph_port: int
    pause: float
    settings: Settings = field(init=False)
    engine: Engine = field(init=False)
    simulator: SalesTrekkerSimulator = field(init=False)
    seen: dict[str, str] = field(default_factory=dict)
    seen_actions: dict[str, str] = field(default_factory=dict)

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
        self._prepare_microsoft_365(runtime, api_key)

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self.graph_port}"

    def _prepare_microsoft_365(self, runtime: Runtime, salt: str) -> None:
        """The Microsoft 365 simulator, a connection to it, and the recipes."""
        tls = self.folder / "tls"
        tls.mkdir(exist_ok=True)
        self.certificates = make_loopback_certificates(tls)
        # msal (through requests) trusts the simulator's throwaway CA.
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.certificates.ca_path)
        self.graph = MicrosoftGraphSimulator(tenant_id=TENANT_ID)
        client_secret = secrets.token_hex(16)
        self.graph.add_app(CLIENT_ID, client_secret)
        self.graph.add_user(MAILBOX, "Harbour Home Loans")
        with transaction(self.engine, write=True) as connection:
            broker = brokers.get_broker(connection, BROKER)
            record = create_m365_connection(
                connection,
                broker_id=broker.id,
                name="office",
                kind=M365_APP_ONLY,
                tenant_id=TENANT_ID,
                client_id=CLIENT_ID,
                client_secret_encrypted=runtime.vault.encrypt(Secret(client_secret)),
                authority_url=self.graph_url,
                graph_url=self.graph_url,
                mailbox=MAILBOX,
            )
            mark_m365_connected(connection, record.id)
            self.connection_id = record.id
            for recipe_id, values in DEMO_RECIPES:
                text = get_recipe(recipe_id).render(values)
                for source in split_rule_file(
                    text, source_name=recipe_id, connections=["office"]
                ):
                    save_rule_source(connection, broker.id, source)

    async def run(self, *, serve: bool) -> bool:
        """Play the journey; keep serving if asked. True if all went well."""
        worker = build_worker(
            self.engine,
            self.settings,
            metrics=self.runtime.metrics,
            graph_transport=self.graph.transport(),
        )
        app = create_app(self.settings, self.runtime, worker)
        servers = [
            _server(app, self.port),
            _server(self.simulator.app, self.simulator_port),
            _server(self.graph.app, self.graph_port, self.certificates),
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
        click.echo(f"Microsoft 365 simulator on {self.graph_url} (mailbox {MAILBOX})")
        click.echo("rules: " + ", ".join(recipe for recipe, _ in DEMO_RECIPES))
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
                "ask for payslips (required documents)",
                lambda deal: sim.require_document(deal, "Payslips"),
            ),
            (
                "book settlement in 4 weeks",
                lambda deal: sim.set_due_date(deal, date.today() + timedelta(days=28)),
            ),
            (
                "move settlement a week later",
                lambda deal: sim.set_due_date(deal, date.today() + timedelta(days=35)),
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
        await self._microsoft_365_steps()
        events_ok = all(status == "done" for status in self.seen.values())
        actions_ok = all(status == "done" for status in self.seen_actions.values())
        click.echo("")
        click.echo(
            f"{len(self.seen)} events, {len(self.seen_actions)} actions; "
            f"in Microsoft 365: {self._summary()}"
        )
        return events_ok and actions_ok and bool(self.seen_actions)

    async def _microsoft_365_steps(self) -> None:
        """Graph as a source: subscribe, a client's mail, the approval task done."""
        service = SubscriptionService(
            self.engine,
            self.runtime.vault,
            self.settings,
            transport=self.graph.transport(),
        )
        for kind, list_name in (("inbox", None), ("todo", "Deals")):
            click.echo(f"Microsoft 365: subscribe to {kind} changes")
            await service.subscribe(self.connection_id, kind, list_name=list_name)
        await asyncio.sleep(self.pause)
        click.echo("Microsoft 365: Jane Citizen mails the broker")
        await self.graph.deliver_mail(
            MAILBOX,
            sender="jane.citizen@example.com",
            sender_name="Jane Citizen",
            subject="Settlement day",
            body="Hi, what time should we expect the keys? Thanks, Jane",
        )
        await self._settle()
        deals = next(
            found
            for found in self.graph.task_lists(MAILBOX)
            if found["displayName"] == "Deals"
        )
        for task in self.graph.tasks(MAILBOX, deals["id"]):
            await asyncio.sleep(self.pause)
            click.echo(f"Microsoft 365: complete the task {task['title']!r}")
            await self.graph.complete_task(MAILBOX, deals["id"], task["id"])
            await self._settle()

    def _summary(self) -> str:
        tasks = sum(
            len(self.graph.tasks(MAILBOX, found["id"]))
            for found in self.graph.task_lists(MAILBOX)
        )
        return (
            f"{tasks} task(s), {len(self.graph.sent_mail)} mail(s), "
            f"{len(self.graph.events(MAILBOX))} calendar event(s)"
        )

    async def _settle(self, timeout: float = 30.0) -> None:
        """Wait for the simulators' webhooks and their processing; print them.

        Microsoft 365 notifies what the actions change (a mail they send to
        the watched inbox) as they run: once everything looks done, its
        deliveries are awaited and the events looked at again.
        """
        await self.simulator.flush()
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            rows, actions = await asyncio.to_thread(self._progress)
            for row in rows:
                if self.seen.get(row["id"]) != row["status"]:
                    self.seen[row["id"]] = row["status"]
                    click.echo(_describe(row))
            for action in actions:
                if self.seen_actions.get(action["key"]) != action["status"]:
                    self.seen_actions[action["key"]] = action["status"]
                    click.echo(_describe_action(action))
            settled = all(row["status"] not in PENDING for row in rows)
            due = [
                action
                for action in actions
                if action["status"] in ("scheduled", "running")
                and action["run_at"] <= utcnow()
            ]
            if settled and not due:
                await self.graph.flush_notifications()
                later, _ = await asyncio.to_thread(self._progress)
                if len(later) == len(rows):
                    return
            await asyncio.sleep(0.1)

    def _progress(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The events and the actions so far, oldest first."""
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(
                    Event.id,
                    Event.type,
                    Event.status,
                    Event.changes,
                    Event.status_reason,
                    Event.caused_by,
                ).order_by(Event.id)
            ).all()
            actions = connection.execute(
                select(
                    ActionRecord.key,
                    ActionRecord.rule_id,
                    ActionRecord.kind,
                    ActionRecord.status,
                    ActionRecord.run_at,
                    ActionRecord.output,
                    ActionRecord.error,
                ).order_by(ActionRecord.created_at)
            ).all()
        return (
            [dict(row._mapping) for row in rows],
            [dict(action._mapping) for action in actions],
        )


def _describe(row: dict[str, Any]) -> str:
    text = f"  event {row['type']:<22} {row['status']:<15}"
    changes = json.loads(row["changes"]) if row["changes"] else {}
    parts = []
    for name, change in changes.items():
        before, after = (_readable(name, change[end]) for end in ("from", "to"))
        parts.append(f"{name}: {before} → {after}")
    if parts:
        text += "  " + "; ".join(parts)
    cause = json.loads(row["caused_by"]) if row["caused_by"] else None
    if cause:
        text += f"  caused by rule {cause['rule']} ({cause['kind']})"
    if row["status_reason"] and row["status"] not in PENDING:
        text += f"  ({row['status_reason']})"
    return text


def _describe_action(action: dict[str, Any]) -> str:
    text = f"    run {action['rule_id']:<18} {action['kind']:<18} {action['status']}"
    if action["status"] == "scheduled" and action["run_at"] > utcnow():
        text += f" for {action['run_at']:%Y-%m-%d %H:%M} UTC"
    output = json.loads(action["output"]) if action["output"] else {}
    if isinstance(output.get("done"), str):
        text += f" ({output['done']})"
    if action["error"]:
        text += f"  ({action['error']})"
    return text


def _readable(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("name")
    if name == "due_date" and isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC).date().isoformat()
    return value


def _server(
    app: Any, port: int, certificates: LoopbackCertificates | None = None
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=str(certificates.cert_path) if certificates else None,
        ssl_keyfile=str(certificates.key_path) if certificates else None,
    )
    return uvicorn.Server(config)

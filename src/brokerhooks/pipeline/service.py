"""Assembling a worker, alone (``brokerhooks worker``) or inside ``serve``."""

from __future__ import annotations

import asyncio
import signal

import httpx
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.auth import TokenProviders
from brokerhooks.connectors.msgraph.subscriptions import SubscriptionService
from brokerhooks.metrics import Metrics
from brokerhooks.pipeline.act import ActionRunner
from brokerhooks.pipeline.graph_source import GraphSource
from brokerhooks.pipeline.process import EventProcessor
from brokerhooks.pipeline.readers import SalesTrekkerReaders
from brokerhooks.pipeline.services import WorkerServices
from brokerhooks.pipeline.subscriptions import SubscriptionJobs
from brokerhooks.pipeline.worker import Dispatcher, Worker
from brokerhooks.security.secrets import Vault
from brokerhooks.store.queue import PROCESS_EVENT
from brokerhooks.store.runs import RUN_ACTION
from brokerhooks.store.subscriptions import SUBSCRIPTION_JOB


def build_worker(
    engine: Engine,
    settings: Settings,
    *,
    concurrency: int | None = None,
    metrics: Metrics | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    graph_transport: httpx.AsyncBaseTransport | None = None,
) -> Worker:
    """A worker for events, actions and Graph subscriptions' upkeep.

    ``transport`` and ``graph_transport`` route SalesTrekker and Graph calls
    (the demo and tests use the simulators in-process); by default calls go
    over the network.
    """
    readers = SalesTrekkerReaders(engine, settings, transport=transport)
    vault = Vault(settings.fernet_keys)
    http = httpx.AsyncClient(
        timeout=settings.action_timeout_seconds, follow_redirects=False
    )
    token_providers = TokenProviders(engine, vault)

    async def close_clients() -> None:
        await http.aclose()
        await asyncio.to_thread(token_providers.close)

    def services(broker_id: str) -> WorkerServices:
        return WorkerServices(
            engine=engine,
            vault=vault,
            settings=settings,
            broker_id=broker_id,
            readers=readers,
            http=http,
            graph_transport=graph_transport,
            token_providers=token_providers,
        )

    events = EventProcessor(
        engine=engine,
        settings=settings,
        readers=readers,
        metrics=metrics,
        graph=GraphSource(engine, vault, transport=graph_transport),
    )
    actions = ActionRunner(
        engine=engine,
        settings=settings,
        services=services,
        metrics=metrics,
        closing=close_clients,
    )
    subscriptions = SubscriptionJobs(
        engine=engine,
        service=SubscriptionService(engine, vault, settings, transport=graph_transport),
        settings=settings,
        metrics=metrics,
    )
    dispatcher = Dispatcher(
        {
            PROCESS_EVENT: events,
            RUN_ACTION: actions,
            SUBSCRIPTION_JOB: subscriptions,
        }
    )
    return Worker(
        engine=engine, settings=settings, processor=dispatcher, concurrency=concurrency
    )


async def run_until_signalled(worker: Worker, grace: float) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then stop it gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(worker.run())
    await stop.wait()
    await worker.stop(grace)
    await task

"""Assembling a worker, alone (``brokerhooks worker``) or inside ``serve``."""

from __future__ import annotations

import asyncio
import signal

import httpx
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.metrics import Metrics
from brokerhooks.pipeline.process import EventProcessor
from brokerhooks.pipeline.readers import SalesTrekkerReaders
from brokerhooks.pipeline.worker import Worker


def build_worker(
    engine: Engine,
    settings: Settings,
    *,
    concurrency: int | None = None,
    metrics: Metrics | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Worker:
    processor = EventProcessor(
        engine=engine,
        settings=settings,
        readers=SalesTrekkerReaders(engine, settings, transport=transport),
        metrics=metrics,
    )
    return Worker(
        engine=engine, settings=settings, processor=processor, concurrency=concurrency
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

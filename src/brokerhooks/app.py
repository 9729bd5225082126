"""Builds the ASGI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokerhooks import console
from brokerhooks.api import mount_api
from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.auth import CALLBACK_PATH
from brokerhooks.connectors.msgraph.callback import m365_callback
from brokerhooks.ingest import msgraph, salestrekker
from brokerhooks.pipeline.worker import Worker
from brokerhooks.runtime import Runtime
from brokerhooks.store.database import is_reachable

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if await asyncio.to_thread(is_reachable, runtime.engine):
        return JSONResponse({"status": "ready"})
    return JSONResponse(
        {"status": "unavailable", "detail": "the store cannot be reached"},
        status_code=503,
    )


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(
        generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def create_app(
    settings: Settings,
    runtime: Runtime | None = None,
    worker: Worker | None = None,
) -> Starlette:
    """The service: ingest, health and metrics routes over one runtime.

    With a ``worker``, the app runs it beside the routes (``serve`` without
    ``--no-worker``): it is woken after every commit of new events and, on
    shutdown, finishes or releases its jobs before the writer stops.
    """
    runtime = runtime if runtime is not None else Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.writer.start()
        worker_task = None
        if worker is not None:
            runtime.writer.on_commit = worker.wake
            worker_task = asyncio.create_task(worker.run(), name="worker")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                await worker.stop()
                await worker_task
            await runtime.writer.stop()

    app = Starlette(
        routes=[
            Route(
                "/hooks/salestrekker",
                salestrekker.Endpoint(runtime),
                methods=ALL_METHODS,
            ),
            *msgraph.routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route(CALLBACK_PATH, m365_callback, methods=["GET", "POST"]),
            mount_api(runtime),
            *console.routes(),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app

"""Builds the ASGI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokerhooks.config import Settings
from brokerhooks.ingest import salestrekker
from brokerhooks.runtime import Runtime
from brokerhooks.store.database import is_reachable

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Extra work a service runs beside the app (the embedded worker), started
# after the runtime and stopped before it.
Companion = Callable[[Runtime], Coroutine[Any, Any, None]]


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
    companions: list[Companion] | None = None,
) -> Starlette:
    """The service: ingest, health and metrics routes over one runtime."""
    runtime = runtime if runtime is not None else Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.writer.start()
        tasks = [asyncio.create_task(run(runtime)) for run in companions or []]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.writer.stop()

    app = Starlette(
        routes=[
            Route("/hooks/salestrekker", salestrekker.receive, methods=ALL_METHODS),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app

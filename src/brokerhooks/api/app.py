"""The JSON API application, mounted at ``/api/v1`` by ``brokerhooks.app``."""

from __future__ import annotations

import re
import time
from typing import Final

import structlog
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerhooks import __version__
from brokerhooks.api import docs, errors, events, rules, runs
from brokerhooks.api.auth import current_broker
from brokerhooks.api.errors import COMMON_ERRORS
from brokerhooks.api.params import one_value_each
from brokerhooks.runtime import Runtime

log = structlog.get_logger("brokerhooks.api")

PREFIX: Final = "/api/v1"
DESCRIPTION: Final = """\
The JSON API of brokerhooks: a broker's events, rules and runs.

Every request but this description (and `/api/v1/docs`) needs a broker's
API token, `Authorization: Bearer <token>` (`brokerhooks tokens add
--broker NAME`). A token sees its own broker's records only. Lists are
pages, newest first: pass a page's `next` as `before` to get the next one.
Every error answers `{"error": code, "detail": text}`. See docs/api.md.
"""


ROUTERS: Final = (events.router, rules.router, runs.router)


def create_api(runtime: Runtime) -> FastAPI:
    """The API over ``runtime``; it reads nothing from the app it is mounted in."""
    api = FastAPI(
        title="brokerhooks",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=COMMON_ERRORS,
        generate_unique_id_function=_operation_id,
    )
    api.state.runtime = runtime
    errors.install(api)
    # Every route needs a token: a new route cannot forget it.
    for router in ROUTERS:
        api.include_router(
            router, dependencies=[Depends(current_broker), Depends(one_value_each)]
        )
    api.add_middleware(RequestLog)

    @api.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def read_docs() -> HTMLResponse:
        return HTMLResponse(docs.render(api.openapi()))

    return api


def _operation_id(route: APIRoute) -> str:
    """Operation ids are the handlers' names: ``list_events``, ``get_run``."""
    return route.name


def mount_api(runtime: Runtime) -> Mount:
    """The API as a route of the service, at ``PREFIX``.

    Starlette's mount pattern ends at a newline (its ``.`` does not match
    one), so a path holding an encoded newline would fall through to the
    service's plain-text 404; matching across newlines keeps every answer
    under ``PREFIX`` the API's own JSON.
    """
    route = Mount(PREFIX, app=create_api(runtime))
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


class RequestLog:
    """One log line per API request: method, path, status, broker, error code.

    Neither the query string nor any header is logged: a token never is.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state", {})
            log.info(
                "api_request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                broker_id=state.get("broker_id"),
                error=state.get("api_error"),
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )

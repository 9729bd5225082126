"""The page the browser comes back to after a Microsoft 365 sign-in.

Mount ``m365_callback`` at ``CALLBACK_PATH`` for GET and POST: the sign-in
is started with ``response_mode=form_post``, so Entra ID POSTs the code as
a form; GET (a query string) is accepted too. The route needs
``app.state.runtime`` (for the engine and the vault). It answers a small
plain page for the person who signed in.
"""

from __future__ import annotations

import asyncio
import html
from urllib.parse import parse_qsl

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from brokerhooks.connectors.errors import ConnectorError, TransientError
from brokerhooks.connectors.msgraph.auth import complete_sign_in
from brokerhooks.connectors.msgraph.errors import SignInFailed
from brokerhooks.errors import StoreUnavailable

log = structlog.get_logger("brokerhooks.connectors.msgraph")

MAX_FORM_BYTES = 64 * 1024


async def m365_callback(request: Request) -> Response:
    """Finish the sign-in named by ``state``; a page saying how it went."""
    params = await _auth_response(request)
    if params is None:
        return _page(413, "Sign-in not finished", "The reply was too large.")
    runtime = request.app.state.runtime
    try:
        record = await asyncio.to_thread(
            complete_sign_in, runtime.engine, runtime.vault, params
        )
    except SignInFailed as error:
        return _page(400, "Sign-in not finished", str(error))
    except (TransientError, StoreUnavailable) as error:
        log.warning("m365_callback_failed", reason=str(error))
        return _page(
            503,
            "Sign-in not finished",
            f"{error}. Open the sign-in link again in a minute.",
        )
    except ConnectorError as error:
        return _page(400, "Sign-in not finished", str(error))
    return _page(
        200,
        "Microsoft 365 connected",
        f"The connection {record.name!r} of broker {record.broker_name!r} now "
        f"acts as {record.mailbox}. You can close this page.",
    )


async def _auth_response(request: Request) -> dict[str, str] | None:
    if request.method != "POST":
        return dict(request.query_params)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _page(status: int, title: str, message: str) -> Response:
    return HTMLResponse(
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        "</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        "</body></html>\n",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )

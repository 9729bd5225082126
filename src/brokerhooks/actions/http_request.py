"""``http_request``: an outbound webhook, signed the Standard Webhooks way.

Every request carries three headers:

- ``webhook-id``: the action's idempotency key, the same on every attempt, so
  that the receiver can drop a repeat;
- ``webhook-timestamp``: this attempt's time in unix seconds;
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256, under the
  broker's signing secret, of ``{webhook-id}.{webhook-timestamp}.{body}``.

The signing secret is the setting ``http_signing_secret`` when there is one
(``whsec_`` and base64, or plain text). Without it, each broker gets its own
secret, derived with HMAC-SHA256 from the first of ``BROKERHOOKS_SECRET_KEYS``
and the broker's id: stable across restarts, different per broker, and
showing it reveals nothing of the key. Putting a new key first changes every
derived secret, and receivers must then be given the new one.

Destinations must be public addresses (see ``outbound``). Redirects are not
followed. 5xx, 408, 425 and 429 answers are TransientErrors (with the
receiver's ``Retry-After``); other 4xx are PermanentErrors with the status
and the start of the body; timeouts and lost connections are transient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from typing import ClassVar

import httpx
from pydantic import SecretStr

from brokerhooks import __version__
from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.outbound import (
    check_destination,
    check_peer,
    origin,
    refuse_failure,
    timeout,
)
from brokerhooks.actions.support import read_params
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.rules.model import HttpRequestParams, JSONBody
from brokerhooks.security.secrets import Secret

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of a shown secret
SIGNATURE_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})
_DERIVATION_LABEL = b"brokerhooks http_request signing secret\x00"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HttpRequest:
    name: ClassVar[str] = "http_request"
    why: ClassVar[str] = (
        "a request whose answer is lost (a timeout, a worker that dies) is sent "
        "again; its webhook-id is the same on every attempt, so a receiver that "
        "drops repeated ids acts once"
    )
    guarantee: ClassVar[str] = f"at-least-once: {why}"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, HttpRequestParams)
        settings = ctx.services.settings
        await check_destination(params.url, settings)

        body, content_type = encode_body(params.body)
        timestamp = int(time.time())
        headers = {
            "user-agent": f"brokerhooks/{__version__}",
            **({"content-type": content_type} if content_type else {}),
            **checked_headers(params.headers),
            "webhook-id": ctx.key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                signing_secret(settings, ctx.broker_id), ctx.key, timestamp, body
            ),
        }

        status = await send(ctx, params, headers, body)
        return ActionResult(
            output={
                "status": status,
                "method": params.method,
                "destination": origin(params.url),
                "webhook_id": ctx.key,
            }
        )


async def send(
    ctx: ActionContext, params: HttpRequestParams, headers: dict[str, str], body: bytes
) -> int:
    """Send the request; the status of a 2xx answer, else the error it means."""
    settings = ctx.services.settings
    where = origin(params.url)
    try:
        async with ctx.services.http.stream(
            params.method,
            params.url,
            content=body or None,
            headers=headers,
            timeout=timeout(settings),
            follow_redirects=False,
        ) as response:
            check_peer(params.url, response, settings)
            await refuse_failure(params.url, response, params.method)
            return response.status_code
    except httpx.TimeoutException:
        raise TransientError(
            f"{params.method} to {where} got no answer in time"
        ) from None
    except httpx.TransportError as error:
        raise TransientError(
            f"{params.method} to {where} failed: {type(error).__name__}"
        ) from None


def encode_body(body: JSONBody | None) -> tuple[bytes, str | None]:
    """The bytes to send and their content type: JSON for a map or list."""
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return text.encode(), "application/json"


def checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """The rule's headers, lower-cased; PermanentError for one we cannot send."""
    checked: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.strip().lower()
        if lowered in SIGNATURE_HEADERS:
            raise PermanentError(
                f"params.headers: {name} is set by brokerhooks when it signs the "
                "request; remove it from the rule"
            )
        if not _HEADER_NAME.fullmatch(lowered):
            raise PermanentError(f"params.headers: {name!r} is not a header name")
        if "\r" in value or "\n" in value:
            raise PermanentError(
                f"params.headers.{name}: the value holds a line break; keep it on "
                "one line"
            )
        checked[lowered] = value
    return checked


def signing_secret(settings: Settings, broker_id: str) -> bytes:
    """The key a broker's requests are signed with (see the module docstring)."""
    configured = _reveal(getattr(settings, "http_signing_secret", None))
    if configured:
        return _decode_secret(configured)
    return hmac.new(
        settings.fernet_keys[0],
        _DERIVATION_LABEL + broker_id.encode(),
        hashlib.sha256,
    ).digest()


def shown_secret(secret: bytes) -> str:
    """A signing secret as receivers' Standard Webhooks libraries take it."""
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def sign(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _reveal(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Secret):
        return value.reveal()
    return str(value)


def _decode_secret(text: str) -> bytes:
    if not text.startswith(SECRET_PREFIX):
        return text.encode()
    try:
        return base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise PermanentError(
            "BROKERHOOKS_HTTP_SIGNING_SECRET starts with whsec_ but the rest is "
            "not base64; set it to whsec_ and a base64 key, or to plain text"
        ) from None

"""Keeps secrets out of log lines.

Two layers: fields whose names say they hold a secret are masked whole, and
every string value is scrubbed of credentials in the shapes we receive or
send (``Salestrekker <key>``, ``Bearer <token>``, ``apiKey`` in a GraphQL
body).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "**********"

SECRET_FIELD_NAMES = frozenset(
    {
        "authorization",
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "password",
        "secret",
        "client_secret",
        "client_state",
        "clientstate",
        "cookie",
        "set-cookie",
    }
)

_CREDENTIAL = re.compile(
    r"(?P<scheme>\b(?:salestrekker|bearer|basic)\s+)(?P<value>[^\s,;\"']+)",
    re.IGNORECASE,
)
_KEYED_VALUE = re.compile(
    r"(?P<name>\"?(?:apiKey|api_key|password|token|access_token|refresh_token"
    r"|client_secret|clientState)\"?\s*[:=]\s*\"?)(?P<value>[^\s,;\"'}]+)",
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    """Mask credentials that appear inside free text."""
    text = _CREDENTIAL.sub(lambda m: m["scheme"] + MASK, text)
    return _KEYED_VALUE.sub(lambda m: m["name"] + MASK, text)


def redact_value(name: str, value: Any) -> Any:
    if name.lower() in SECRET_FIELD_NAMES and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", item) for item in value]
    return value


def redact_event_dict(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret fields and scrub free text."""
    for name, value in list(event_dict.items()):
        event_dict[name] = redact_value(name, value)
    return event_dict

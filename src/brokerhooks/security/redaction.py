"""Keeps secrets out of log lines.

Two layers: fields whose names say they hold a secret are masked whole, and
every string value is scrubbed of credentials in the shapes we receive or
send (``Salestrekker <key>``, ``Bearer <token>``, ``apiKey`` in a GraphQL
body).

Every log line passes through here, one per delivery at least, so the
common case is kept cheap: a string is only rewritten after one search has
found a word that a credential would follow.
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


# Text without one of these has nothing for the patterns above to mask: a
# scheme followed by white space, or the name of a key. ASCII text, nearly
# all of it, is lowered and searched for them as plain substrings, which is
# many times faster than a regular expression; other text is searched as the
# patterns search it.
_SCHEMES = ("salestrekker", "bearer", "basic")
_KEY_NAMES = ("apikey", "api_key", "password", "token", "client_secret", "clientstate")
_HINT_ANY_CASE = re.compile(
    r"(?:salestrekker|bearer|basic)\s|api_?key|password|token|client_secret"
    r"|clientstate",
    re.IGNORECASE,
)
# Values of these types hold no text to scrub.
_PLAIN = (int, float, bool, type(None))


def _may_hold_credential(text: str) -> bool:
    if not text.isascii():
        return _HINT_ANY_CASE.search(text) is not None
    lowered = text.lower()
    if any(name in lowered for name in _KEY_NAMES):
        return True
    return any(_followed_by_space(lowered, scheme) for scheme in _SCHEMES)


def _followed_by_space(text: str, word: str) -> bool:
    start = text.find(word)
    while start != -1:
        end = start + len(word)
        if text[end : end + 1].isspace():
            return True
        start = text.find(word, end)
    return False


def scrub(text: str) -> str:
    """Mask credentials that appear inside free text."""
    if not _may_hold_credential(text):
        return text
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
    """structlog processor: mask secret fields and scrub free text.

    The text fields of a line are searched together first: a line whose
    text holds no hint of a credential, the usual case, is left as it is.
    """
    texts: list[str] = []
    # Replacing the value of a key keeps the iteration valid.
    for name, value in event_dict.items():
        if name.lower() in SECRET_FIELD_NAMES:
            if value not in (None, ""):
                event_dict[name] = MASK
        elif type(value) is str:
            texts.append(name)
        elif type(value) not in _PLAIN:
            event_dict[name] = redact_value(name, value)

    # NUL cannot be part of a hint, so no hint spans two fields.
    if texts and _may_hold_credential("\0".join(event_dict[name] for name in texts)):
        for name in texts:
            event_dict[name] = scrub(event_dict[name])
    return event_dict

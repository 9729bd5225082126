"""Redaction: the quick pre-check never lets a credential through."""

from __future__ import annotations

from typing import Any

import pytest

from brokerhooks.security import redaction
from brokerhooks.security.redaction import MASK, redact_event_dict, scrub


def scrub_everything(text: str) -> str:
    """Both patterns on every text, as redaction ran before the pre-check."""
    text = redaction._CREDENTIAL.sub(lambda m: m["scheme"] + MASK, text)
    return redaction._KEYED_VALUE.sub(lambda m: m["name"] + MASK, text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Salestrekker 0123456789abcdef",
        "SALESTREKKER\tk3y",
        "got Bearer eyJ0eXAi.payload.sig from Graph",
        "basic dXNlcjpwYXNz",
        '{"apiKey": "abc123", "query": "{ ticket }"}',
        "api_key=abc123&x=1",
        "Password = hunter2",
        "refresh_token: r-123; access_token: a-456",
        'client_secret="s3cr3t"',
        "clientState=abc",
        # Characters that ignore-case matching folds onto ASCII letters.
        "bas\u017fic dXNlcjpwYXNz",
        "api\u212aey=abc123",
        "ünïcode Bearer tøken",
        "salestrekker",
        "salestrekker\x00abc and bearer",
        "Bearer\x1cabc123",
        "basic\u2003abc123",
        "source salestrekker\tkey",
        "01a23d7d-44d5-7285-ba36-45f1bf0fff72",
        "nothing to see here",
        "",
    ],
)
def test_scrub_masks_what_the_patterns_mask(text: str) -> None:
    assert scrub(text) == scrub_everything(text)


def test_event_dicts_are_redacted_in_one_pass() -> None:
    event: dict[str, Any] = {
        "event": "delivery",
        "source": "salestrekker",
        "tail": "bearer",
        "head": " not-a-token",
        "token": "abc",
        "Password": 1234,
        "api_key": None,
        "secret": "",
        "reason": "header was 'Salestrekker abc123'",
        "status": 401,
        "ms": 1.5,
        "ok": True,
        "headers": {"Authorization": "Bearer xyz", "accept": "*/*"},
        "attempts": ["bearer one", 2],
    }

    redacted = redact_event_dict(None, "info", dict(event))

    assert redacted == {
        "event": "delivery",
        "source": "salestrekker",
        "tail": "bearer",
        "head": " not-a-token",
        "token": MASK,
        "Password": MASK,
        "api_key": None,
        "secret": "",
        "reason": f"header was 'Salestrekker {MASK}'",
        "status": 401,
        "ms": 1.5,
        "ok": True,
        "headers": {"Authorization": MASK, "accept": "*/*"},
        "attempts": [f"bearer {MASK}", 2],
    }

"""Reading the key from the Authorization header, and the failure throttle."""

from __future__ import annotations

import time

import pytest

from brokerhooks.ingest.auth import FailureThrottle, parse_authorization


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Salestrekker abc123", "abc123"),
        ("salestrekker abc123", "abc123"),
        ("  SALESTREKKER   abc123  ", "abc123"),
        ("Salestrekker\tabc123", "abc123"),
        (None, None),
        ("", None),
        ("Salestrekker", None),
        ("Salestrekker   ", None),
        ("Bearer abc123", None),
        ("Salestrekker abc 123", None),
        ("Salestrekkerabc123", None),
    ],
)
def test_parse_authorization(header: str | None, key: str | None) -> None:
    parsed = parse_authorization(header)

    assert (parsed.reveal() if parsed else None) == key


def test_parsed_key_never_shows_in_its_repr() -> None:
    parsed = parse_authorization("Salestrekker abc123")

    assert "abc123" not in repr(parsed)
    assert "abc123" not in str(parsed)


def test_throttle_blocks_after_the_limit_and_forgives_success() -> None:
    throttle = FailureThrottle(limit=3, window=60, cooldown=30)

    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")

    assert 29 < throttle.retry_after("a") <= 30
    assert throttle.retry_after("b") == 0
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0


def test_throttle_window_expires() -> None:
    throttle = FailureThrottle(limit=2, window=0.05, cooldown=30)

    throttle.failed("a")
    time.sleep(0.1)
    throttle.failed("a")

    assert throttle.retry_after("a") == 0


def test_throttle_forgets_the_oldest_addresses() -> None:
    throttle = FailureThrottle(limit=1, window=60, cooldown=30, capacity=2)

    for address in ("a", "b", "c"):
        throttle.failed(address)

    assert throttle.retry_after("a") == 0
    assert throttle.retry_after("c") > 0

"""Errors of outbound calls, split by what the worker should do next.

    ConnectorError
    ├── TransientError    try again later (timeouts, 5xx, 429, connection loss)
    └── PermanentError    retrying cannot help; a person must act on `reason`

A ``TransientError`` may carry ``retry_after`` (seconds) when the remote
side said how long to wait. A ``PermanentError``'s message is written for a
person: what is wrong and what to do about it.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of errors raised by connectors."""


class TransientError(ConnectorError):
    """The call may succeed if tried again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """The call cannot succeed as things stand; the message says why."""

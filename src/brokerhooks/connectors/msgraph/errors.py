"""Errors of the Microsoft Graph connector, by what the caller can do.

    ConnectorError
    ├── TransientError             429/503/504 after retries, timeouts, 5xx
    └── PermanentError
        ├── GraphRequestError      Graph refused the request (4xx)
        │   ├── GraphNotFound      404: the item is gone
        │   └── GraphConflict      409: the name is taken
        ├── ReconnectRequired      a person must sign in again (or fix the secret)
        └── SignInFailed           a sign-in callback could not finish

Messages are written for a person and never carry a token or a secret.
"""

from __future__ import annotations

from brokerhooks.connectors.errors import PermanentError


class GraphRequestError(PermanentError):
    """Graph answered 4xx; ``status_code`` and Graph's ``code`` say why."""

    def __init__(self, message: str, *, status_code: int, code: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class GraphNotFound(GraphRequestError):
    """The item asked for does not exist (any more)."""


class GraphConflict(GraphRequestError):
    """An item with that name already exists."""


class ReconnectRequired(PermanentError):
    """The stored sign-in no longer works; the message says what to run."""

    def __init__(self, *, connection: str, broker: str, reason: str, fix: str) -> None:
        super().__init__(
            f"Microsoft 365 connection {connection!r} of broker {broker!r} needs "
            f"attention: {reason}. {fix}"
        )
        self.connection = connection
        self.broker = broker
        self.reason = reason


class SignInFailed(PermanentError):
    """The browser came back from sign-in, but the connection is not made."""

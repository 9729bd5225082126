"""Errors of the SalesTrekker client, by what the worker should do next.

    ConnectorError                      (brokerhooks.connectors.errors)
    ├── TransientError                  retry later: timeouts, 5xx, 429, ...
    └── PermanentError                  park the event; a person must act
        ├── ApiKeyRejectedError         authenticate refused the API key
        ├── NotFoundError               the deal, contact or note is gone
        ├── SchemaMismatchError         the API no longer fits our schema
        └── RequestRejectedError        any other refusal

Every message is written for a person and names the command that fixes the
problem. No message carries an API key or a token.
"""

from __future__ import annotations

from brokerhooks.connectors.errors import PermanentError


class ApiKeyRejectedError(PermanentError):
    """SalesTrekker refused the broker's API key; it must be replaced."""


class NotFoundError(PermanentError):
    """The entity asked for does not exist (``ticket``/``contact``/``note`` null)."""

    def __init__(self, message: str, *, entity: str, entity_id: str) -> None:
        super().__init__(message)
        self.entity = entity
        self.entity_id = entity_id


class SchemaMismatchError(PermanentError):
    """The live API rejected an operation that fits the bundled schema."""


class RequestRejectedError(PermanentError):
    """SalesTrekker refused the request for a reason retrying cannot fix."""

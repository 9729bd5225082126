"""Where a broker's SalesTrekker session token is kept between calls.

``authenticate(apiKey:)`` answers a token valid for 14 days (seen: the help
centre and three public JWTs). Keeping it saves one round trip per call and
keeps brokerhooks from minting a token per event. The token is a secret:
``DatabaseTokenStore`` keeps it encrypted with the vault.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import Engine

from brokerhooks.errors import ConfigurationError
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import tokens as store
from brokerhooks.store.database import transaction

log = structlog.get_logger("brokerhooks.salestrekker")

TOKEN_LIFETIME = timedelta(days=14)


class TokenStore(Protocol):
    """Keeps one session token per broker with its expiry."""

    async def load(self, broker_id: str) -> tuple[Secret, datetime] | None:
        """The broker's token and its expiry (UTC), or None."""
        ...

    async def save(self, broker_id: str, token: Secret, expires_at: datetime) -> None:
        """Keep ``token`` for the broker, replacing any other."""
        ...

    async def discard(self, broker_id: str) -> None:
        """Forget the broker's token; nothing happens if there is none."""
        ...


class MemoryTokenStore:
    """Tokens in a dict: for tests and one-off commands."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[Secret, datetime]] = {}

    async def load(self, broker_id: str) -> tuple[Secret, datetime] | None:
        return self.tokens.get(broker_id)

    async def save(self, broker_id: str, token: Secret, expires_at: datetime) -> None:
        self.tokens[broker_id] = (token, expires_at)

    async def discard(self, broker_id: str) -> None:
        self.tokens.pop(broker_id, None)


class DatabaseTokenStore:
    """Tokens in the store's ``salestrekker_tokens`` table, encrypted.

    A token that no configured key decrypts (a key was removed) is treated
    as absent: the client then authenticates again and stores a new one.
    Store failures raise ``StoreUnavailable``.
    """

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self._engine = engine
        self._vault = vault

    async def load(self, broker_id: str) -> tuple[Secret, datetime] | None:
        row = await asyncio.to_thread(self._load, broker_id)
        if row is None:
            return None
        encrypted, expires_at = row
        try:
            return self._vault.decrypt(encrypted), expires_at
        except ConfigurationError:
            log.warning("salestrekker_token_undecryptable", broker_id=broker_id)
            return None

    async def save(self, broker_id: str, token: Secret, expires_at: datetime) -> None:
        encrypted = self._vault.encrypt(token)
        await asyncio.to_thread(self._save, broker_id, encrypted, expires_at)

    async def discard(self, broker_id: str) -> None:
        await asyncio.to_thread(self._discard, broker_id)

    def _load(self, broker_id: str) -> tuple[str, datetime] | None:
        with transaction(self._engine) as connection:
            return store.load_token(connection, broker_id)

    def _save(self, broker_id: str, encrypted: str, expires_at: datetime) -> None:
        with transaction(self._engine, write=True) as connection:
            store.save_token(connection, broker_id, encrypted, expires_at)

    def _discard(self, broker_id: str) -> None:
        with transaction(self._engine, write=True) as connection:
            store.discard_token(connection, broker_id)


def token_expiry(token: Secret, now: datetime) -> datetime:
    """When ``token`` expires: its JWT ``exp`` claim, else ``now`` + 14 days.

    The payload is read without checking the signature: only SalesTrekker
    can check it, and the expiry only decides when to ask for a new token.
    """
    parts = token.reveal().split(".")
    if len(parts) == 3:
        try:
            padded = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(padded))
            return datetime.fromtimestamp(float(claims["exp"]), UTC)
        except (binascii.Error, ValueError, TypeError, KeyError, OverflowError):
            pass
    return now + TOKEN_LIFETIME

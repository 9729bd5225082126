"""Encryption of stored secrets and keyed hashes for looking keys up.

Secrets (SalesTrekker API keys, tokens) are encrypted with MultiFernet: the
first configured key encrypts, every key decrypts, so keys can be rotated by
putting a new key first and re-encrypting (``brokerhooks secrets rotate``).

An API key is found by its keyed hash, HMAC-SHA256 under a subkey derived
from each configured key. Looking a key up computes one hash per configured
key, so brokers stay reachable while keys rotate.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from brokerhooks.errors import ConfigurationError

_LOOKUP_CONTEXT = b"brokerhooks/api-key-lookup/v1"


class Secret:
    """A string that keeps itself out of reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class Vault:
    """Encrypts, decrypts and hashes secrets with the configured keys."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("BROKERHOOKS_SECRET_KEYS: no key configured")
        self._first = Fernet(keys[0])
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._lookup_keys = [
            hmac.new(key, _LOOKUP_CONTEXT, hashlib.sha256).digest() for key in keys
        ]

    def encrypt(self, secret: Secret) -> str:
        return self._fernet.encrypt(secret.reveal().encode()).decode()

    def decrypt(self, token: str) -> Secret:
        """Decrypt a stored secret; ConfigurationError if no key fits."""
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with BROKERHOOKS_SECRET_KEYS; "
                "was a key removed before `brokerhooks secrets rotate` ran?"
            ) from None

    def reencrypt(self, token: str) -> str:
        """Re-encrypt under the first key (for key rotation)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with BROKERHOOKS_SECRET_KEYS"
            ) from None

    def is_current(self, token: str) -> bool:
        """Whether the first key alone decrypts ``token``."""
        try:
            self._first.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def lookup_hash(self, secret: Secret) -> str:
        """The keyed hash stored beside a secret, under the first key."""
        return self.lookup_hashes(secret)[0]

    def lookup_hashes(self, secret: Secret) -> list[str]:
        """The keyed hash under every configured key, first key first."""
        value = secret.reveal().encode()
        return [
            hmac.new(key, value, hashlib.sha256).hexdigest()
            for key in self._lookup_keys
        ]


def constant_time_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())

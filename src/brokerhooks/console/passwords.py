"""Passwords of console users, hashed with argon2id.

Only the hash is stored. Hashing parameters are argon2-cffi's defaults;
a hash made with older parameters is replaced at the next sign-in.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from brokerhooks.security.secrets import Secret

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()


def password_problem(password: Secret) -> str | None:
    """Why a new password is refused, in plain words; None if it is fine."""
    length = len(password.reveal())
    if length < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if length > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.reveal().strip():
        return "a password cannot be only spaces"
    return None


def hash_password(password: Secret) -> str:
    return _hasher.hash(password.reveal())


def verify_password(password_hash: str, password: Secret) -> bool:
    try:
        return _hasher.verify(password_hash, password.reveal())
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def waste_time(password: Secret) -> None:
    """Verify against a throwaway hash, so an unknown email takes as long."""
    verify_password(_throwaway_hash(), password)


@cache
def _throwaway_hash() -> str:
    return _hasher.hash("not a password of anyone")

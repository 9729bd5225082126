"""Console sessions: cookies, CSRF tokens and the sign-in throttle.

A session is a random token in a cookie (``HttpOnly``, ``SameSite=Lax``,
``Secure`` unless the public URL is plain http on loopback); the store
keeps only its SHA-256, with the CSRF token every form of the session
carries. A session ends after ``IDLE`` without a request, after
``LIFETIME`` in any case, or at sign-out.

The sign-in form is protected before any session exists by a second
cookie whose value the form repeats (a double-submit token), so another
site cannot sign a browser in to an account of its choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from brokerhooks.ingest.auth import FailureThrottle, SharedFailures
from brokerhooks.store import users
from brokerhooks.store.types import utcnow
from brokerhooks.store.users import normalise_email

IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
# A session's last_seen_at is written at most this often.
TOUCH_EVERY = timedelta(minutes=1)

# Failed sign-ins: per email (someone guessing one person's password) and
# per address (someone trying many emails), within the window.
EMAIL_FAILURES = 5
ADDRESS_FAILURES = 20
FAILURE_WINDOW = timedelta(minutes=15)
COOLDOWN = timedelta(minutes=15)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def start_session(connection: Connection, user_id: str) -> str:
    """Store a new session of ``user_id``; the token for its cookie."""
    token = new_token()
    users.create_session(
        connection,
        token_hash=token_hash(token),
        user_id=user_id,
        csrf_token=new_token(),
        expires_at=utcnow() + LIFETIME,
    )
    return token


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """How the console's cookies are set, decided by the public URL."""

    secure: bool

    @classmethod
    def for_public_url(cls, public_url: str) -> CookiePolicy:
        parts = urlsplit(public_url)
        plain_loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
        return cls(secure=not plain_loopback)

    def name(self, base: str) -> str:
        # __Host- cookies must be Secure, for path / and of this host only.
        return f"__Host-{base}" if self.secure else base

    @property
    def session(self) -> str:
        return self.name("bh_session")

    @property
    def sign_in(self) -> str:
        return self.name("bh_sign_in")

    @property
    def broker(self) -> str:
        return self.name("bh_broker")

    def set(
        self, response: Response, name: str, value: str, *, max_age: timedelta
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(max_age.total_seconds()),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/", secure=self.secure, httponly=True, samesite="lax"
        )


def is_live(
    *, created_at: datetime, expires_at: datetime, last_seen_at: datetime, now: datetime
) -> bool:
    """Whether a session may still be used at ``now``."""
    return (
        now < expires_at and now < created_at + LIFETIME and now - last_seen_at < IDLE
    )


class SignInThrottle:
    """Slows down password guessing, per email and per client address.

    Counted in memory and, with ``shared``, in the store, so that several
    processes count together; the in-memory count is forgotten on restart.
    """

    def __init__(self, shared: SharedFailures | None = None) -> None:
        window = FAILURE_WINDOW.total_seconds()
        cooldown = COOLDOWN.total_seconds()
        self._emails = FailureThrottle(
            limit=EMAIL_FAILURES,
            window=window,
            cooldown=cooldown,
            shared=shared,
            scope="sign_in_email",
        )
        self._addresses = FailureThrottle(
            limit=ADDRESS_FAILURES,
            window=window,
            cooldown=cooldown,
            shared=shared,
            scope="sign_in_address",
        )

    def retry_after(self, email: str, address: str) -> float:
        """Seconds to wait before this email or address may try again; 0: now."""
        return max(
            self._emails.retry_after(normalise_email(email)),
            self._addresses.retry_after(address),
        )

    def failed(self, email: str, address: str) -> None:
        """Count a failure (and in the store's next batch, when shared)."""
        self._emails.failed(normalise_email(email))
        self._addresses.failed(address)

    async def record_success(self, email: str) -> None:
        """Clear the email's count, here and in the store.

        The address keeps its count: one good password must not wipe the
        failures of guesses at other people's.
        """
        await self._emails.record_success(normalise_email(email), everywhere=True)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"

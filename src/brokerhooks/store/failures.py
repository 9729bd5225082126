"""Failed authentications, counted in the store by every process together.

``record_failure`` counts failures of a subject (an address, an email)
within its window and says until when the subject is blocked; a success
clears the count (``clear_failures``), and ``prune_failures`` forgets what
has outlived every window and cool-down. Subjects are kept as their SHA-256.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from brokerhooks.store.database import dialect_insert
from brokerhooks.store.models import AuthFailure


def subject_hash(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


def record_failure(
    connection: Connection,
    scope: str,
    subject: str,
    *,
    limit: int,
    window: timedelta,
    cooldown: timedelta,
    now: datetime,
    failed: int = 1,
) -> datetime | None:
    """Count ``failed`` failures; until when the subject is blocked, or None."""
    key = subject_hash(subject)
    connection.execute(
        dialect_insert(connection, AuthFailure)
        .values(
            scope=scope,
            subject=key,
            count=0,
            window_started=now,
            blocked_until=None,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["scope", "subject"])
    )
    count, started, blocked = connection.execute(
        select(AuthFailure.count, AuthFailure.window_started, AuthFailure.blocked_until)
        .where(AuthFailure.scope == scope, AuthFailure.subject == key)
        .with_for_update()
    ).one()
    if now - started > window:
        count, started = 0, now
    count += failed
    if blocked is not None and blocked <= now:
        blocked = None
    if count >= limit:
        blocked = now + cooldown
        count, started = 0, now
    connection.execute(
        update(AuthFailure)
        .where(AuthFailure.scope == scope, AuthFailure.subject == key)
        .values(
            count=count, window_started=started, blocked_until=blocked, updated_at=now
        )
    )
    return blocked


def prune_failures(connection: Connection, scope: str, *, before: datetime) -> None:
    """Forget the scope's subjects untouched since ``before``."""
    connection.execute(
        delete(AuthFailure).where(
            AuthFailure.scope == scope, AuthFailure.updated_at < before
        )
    )


def clear_failures(connection: Connection, scope: str, subject: str) -> None:
    connection.execute(
        delete(AuthFailure).where(
            AuthFailure.scope == scope, AuthFailure.subject == subject_hash(subject)
        )
    )

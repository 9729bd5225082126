"""The tables, as SQLAlchemy 2 declarative models.

The migrations in ``store/migrations`` create exactly these tables; a test
compares the two.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from brokerhooks.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Event statuses. `unsupported` comes from ingest; the rest from processing.
RECEIVED = "received"
UNSUPPORTED = "unsupported"
EVENT_STATUSES = (
    RECEIVED,
    "processing",
    "done",
    "coalesced",
    "dead",
    "needs_attention",
    UNSUPPORTED,
)

UUID_LENGTH = 36
# Entity ids are SalesTrekker UUIDs or Microsoft Graph ids (about 150
# characters for Outlook and To Do items).
ENTITY_ID_LENGTH = 255


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Broker(Base):
    """A tenant: owns a SalesTrekker connection, rules and events.

    A removed broker keeps its row (its events point at it) with its key
    wiped; its name becomes free for a new broker.
    """

    __tablename__ = "brokers"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    salestrekker_url: Mapped[str] = mapped_column(String(300))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "uq_brokers_name_active",
            "name",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
            postgresql_where=text("removed_at IS NULL"),
        ),
        Index("uq_brokers_api_key_hash", "api_key_hash", unique=True),
    )


class Event(Base):
    """One accepted notification, stored durably before it is acknowledged."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    broker_id: Mapped[str] = mapped_column(ForeignKey("brokers.id"))
    source: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(100))
    entity_id: Mapped[str] = mapped_column(String(ENTITY_ID_LENGTH))
    deal_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    status: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivery_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    # Filled in by processing.
    status_reason: Mapped[str | None] = mapped_column(Text)
    coalesced_into: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    previous_snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    changes: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # JSON, for an event one of brokerhooks' own actions caused (an echo).
    caused_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_events_broker_id_id", "broker_id", "id"),
        Index("ix_events_status_id", "status", "id"),
        Index("ix_events_deal_id", "deal_id"),
        Index("ix_events_entity_id", "entity_id"),
        # Coalescing updates the events folded into one; few events are.
        Index(
            "ix_events_coalesced_into",
            "coalesced_into",
            sqlite_where=text("coalesced_into IS NOT NULL"),
            postgresql_where=text("coalesced_into IS NOT NULL"),
        ),
    )


class Delivery(Base):
    """One HTTP request received at an ingest endpoint, accepted or not.

    The body is kept only as its size and SHA-256; the key never is.
    """

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    client_address: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    broker_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    body_size: Mapped[int] = mapped_column(BigInteger)
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))

    __table_args__ = (
        Index("ix_deliveries_received_at", "received_at"),
        Index("ix_deliveries_broker_id_received_at", "broker_id", "received_at"),
    )


BIGINT_ID = BigInteger().with_variant(Integer, "sqlite")

# Job statuses. A job is deleted when its work is finished; the event keeps
# the outcome.
QUEUED = "queued"
RUNNING = "running"


class Job(Base):
    """Work waiting in the queue, claimed by a worker under a lease.

    Jobs with the same ``ordering_key`` run one at a time in ``id`` order;
    a job with no key runs whenever a worker is free.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    event_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    ref: Mapped[str | None] = mapped_column(String(250))
    ordering_key: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    run_after: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_ordering_key_id", "ordering_key", "id"),
        Index("ix_jobs_event_id", "event_id"),
    )


class Attempt(Base):
    """One try at processing an event, with its error if it failed."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_attempts_event_id_id", "event_id", "id"),)


class Snapshot(Base):
    """An entity's state as fetched from the CRM for an event."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    subject: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(String(ENTITY_ID_LENGTH))
    event_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_snapshots_broker_id_subject_entity_id",
            "broker_id",
            "subject",
            "entity_id",
            "id",
        ),
        Index("ix_snapshots_event_id", "event_id"),
    )


class SalesTrekkerToken(Base):
    """A broker's SalesTrekker session token, encrypted, until it expires."""

    __tablename__ = "salestrekker_tokens"

    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    token_encrypted: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    obtained_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Microsoft 365 connection kinds and statuses.
M365_DELEGATED = "delegated"
M365_APP_ONLY = "app_only"
M365_KINDS = (M365_DELEGATED, M365_APP_ONLY)
M365_PENDING = "pending"
M365_CONNECTED = "connected"
M365_NEEDS_RECONNECT = "needs_reconnect"
M365_STATUSES = (M365_PENDING, M365_CONNECTED, M365_NEEDS_RECONNECT)


class M365Connection(Base):
    """A broker's credentials for Microsoft 365: an app registration and tokens.

    ``delegated`` connections act as the person who signed in (authorization
    code flow with PKCE); ``app_only`` ones act on ``mailbox`` with the app's
    own permissions (client credentials). The client secret, msal's token
    cache and a sign-in in progress are stored encrypted. ``auth_flow_state``
    finds the sign-in in progress when the browser comes back.
    """

    __tablename__ = "m365_connections"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    broker_id: Mapped[str] = mapped_column(ForeignKey("brokers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[str] = mapped_column(String(100))
    client_id: Mapped[str] = mapped_column(String(100))
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    authority_url: Mapped[str] = mapped_column(String(300))
    graph_url: Mapped[str] = mapped_column(String(300))
    mailbox: Mapped[str | None] = mapped_column(String(320))
    token_cache_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    auth_flow_encrypted: Mapped[str | None] = mapped_column(Text)
    auth_flow_state: Mapped[str | None] = mapped_column(String(100))
    auth_flow_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("uq_m365_connections_broker_id_name", "broker_id", "name", unique=True),
        Index("uq_m365_connections_auth_flow_state", "auth_flow_state", unique=True),
    )


class RuleRecord(Base):
    """One of a broker's rules, kept as the YAML it was written in."""

    __tablename__ = "rules"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    broker_id: Mapped[str] = mapped_column(ForeignKey("brokers.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("uq_rules_broker_id_rule_id", "broker_id", "rule_id", unique=True),
    )


class Run(Base):
    """One evaluation of one rule for one event, with its trace.

    ``status`` follows the run's actions: ``no_action`` (the condition was
    false or failed), ``pending`` (actions waiting or scheduled),
    ``succeeded``, ``failed``.
    """

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    event_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    rule_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    trace: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "ix_runs_broker_id_rule_id_status_id",
            "broker_id",
            "rule_id",
            "status",
            "id",
        ),
        Index("ix_runs_event_id", "event_id"),
    )


class ActionRecord(Base):
    """The idempotency ledger: one row per (event, rule, step).

    A retry or a replay finds the row and never repeats what it records as
    done; ``remote_id`` is what the action made outside.
    """

    __tablename__ = "actions"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    event_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    deal_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    rule_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    connection: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    schedule: Mapped[str | None] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(String(500))
    output: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_actions_run_id", "run_id"),
        Index(
            "ix_actions_broker_id_deal_id_rule_id_step_id",
            "broker_id",
            "deal_id",
            "rule_id",
            "step_id",
        ),
        Index("ix_actions_status", "status"),
        # What an action made, found again when it comes back as an event.
        Index("ix_actions_broker_id_remote_id", "broker_id", "remote_id"),
    )


class User(Base):
    """A person who signs in to the console: a broker's, or an admin."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(200))
    broker_id: Mapped[str | None] = mapped_column(
        ForeignKey("brokers.id", ondelete="CASCADE")
    )
    is_admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("uq_users_email", "email", unique=True),)


class Session(Base):
    """A signed-in browser. Only the token's hash is kept."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)


class ApiToken(Base):
    """A broker's token for the JSON API. Only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    broker_id: Mapped[str] = mapped_column(ForeignKey("brokers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("uq_api_tokens_token_hash", "token_hash", unique=True),
        Index("ix_api_tokens_broker_id", "broker_id"),
    )


# Graph subscription statuses. `creating` until Graph has validated our
# endpoint; `failing` while renewal or recreation keeps failing (retried).
SUBSCRIPTION_CREATING = "creating"
SUBSCRIPTION_ACTIVE = "active"
SUBSCRIPTION_FAILING = "failing"
SUBSCRIPTION_STATUSES = (
    SUBSCRIPTION_CREATING,
    SUBSCRIPTION_ACTIVE,
    SUBSCRIPTION_FAILING,
)


class GraphSubscription(Base):
    """A Microsoft Graph change-notification subscription of a connection.

    ``client_state_encrypted`` is the secret Graph echoes in every
    notification; ``graph_subscription_id`` is Graph's id, which changes when
    the subscription is recreated (the row, and its id, stay).
    ``delta_link`` is where the next delta query starts, for resynchronising
    after missed notifications.
    """

    __tablename__ = "graph_subscriptions"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    broker_id: Mapped[str] = mapped_column(ForeignKey("brokers.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("m365_connections.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20))
    resource: Mapped[str] = mapped_column(String(500))
    list_name: Mapped[str | None] = mapped_column(String(200))
    change_types: Mapped[str] = mapped_column(String(60))
    graph_subscription_id: Mapped[str | None] = mapped_column(String(100))
    client_state_encrypted: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    delta_link: Mapped[str | None] = mapped_column(Text)
    last_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_lifecycle_event: Mapped[str | None] = mapped_column(String(40))
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "uq_graph_subscriptions_graph_subscription_id",
            "graph_subscription_id",
            unique=True,
        ),
        Index(
            "uq_graph_subscriptions_connection_id_kind_resource",
            "connection_id",
            "kind",
            "resource",
            unique=True,
        ),
        Index("ix_graph_subscriptions_broker_id", "broker_id"),
    )


class GraphNotificationKey(Base):
    """A notification already stored, to recognise Graph's repeats of it.

    ``key`` is the SHA-256 of (subscription, resource, change type, version);
    rows older than the dedupe window are pruned.
    """

    __tablename__ = "graph_notification_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    event_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    repeats: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_graph_notification_keys_first_seen_at", "first_seen_at"),
    )


class ContactEmail(Base):
    """An e-mail address of a contact, from the contact's latest snapshot.

    Lets a mail be matched to the contact who sent it; ``email`` is lower
    case.
    """

    __tablename__ = "contact_emails"

    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_contact_emails_broker_id_contact_id", "broker_id", "contact_id"),
    )


class DealClient(Base):
    """A client of a deal, from the deal's latest snapshot.

    ``is_open`` while the deal is active and neither lost nor settled. Lets
    a mail from a contact be matched to the contact's deal.
    """

    __tablename__ = "deal_clients"

    broker_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    deal_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    is_open: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_deal_clients_broker_id_contact_id", "broker_id", "contact_id"),
    )


class AuthFailure(Base):
    """Failed authentications of one subject, counted by every process.

    ``scope`` says what failed (an ingest key, a sign-in's email or address);
    ``subject`` is the SHA-256 of the address or email, never the value.
    """

    __tablename__ = "auth_failures"

    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    window_started: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_auth_failures_updated_at", "updated_at"),)

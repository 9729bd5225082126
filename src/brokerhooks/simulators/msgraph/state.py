"""What the simulated tenant holds: apps, users, tokens, and injected faults."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brokerhooks.simulators.msgraph.common import JSON
from brokerhooks.simulators.msgraph.drive import Drive


@dataclass
class App:
    """An app registration: a confidential client with a secret."""

    client_id: str
    client_secret: str
    # Empty means any redirect URI is accepted (Entra ID requires them to be
    # registered; tests rarely care).
    redirect_uris: tuple[str, ...] = ()


@dataclass
class TaskList:
    resource: JSON
    tasks: dict[str, JSON] = field(default_factory=dict)
    linked_resources: dict[str, list[JSON]] = field(default_factory=dict)


@dataclass
class User:
    """A user with a mailbox, To Do lists, a calendar and a OneDrive."""

    id: str
    upn: str
    display_name: str
    drive: Drive
    task_lists: dict[str, TaskList] = field(default_factory=dict)
    events: dict[str, JSON] = field(default_factory=dict)
    messages: dict[str, JSON] = field(default_factory=dict)
    """The inbox."""
    drafts: dict[str, JSON] = field(default_factory=dict)
    """Messages made with ``POST /messages`` and not sent yet."""
    sent_items: dict[str, JSON] = field(default_factory=dict)
    """Drafts sent with ``POST /messages/{id}/send``, under the same id."""


@dataclass
class AccessToken:
    value: str
    client_id: str
    user_id: str | None  # None for app-only tokens
    expires_at: float
    scopes: tuple[str, ...]


@dataclass
class RefreshToken:
    value: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    expires_at: float
    revoked: bool = False


@dataclass
class AuthorizationCode:
    value: str
    client_id: str
    user_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    nonce: str | None
    expires_at: float
    redeemed: bool = False


@dataclass
class Fault:
    """An injected Graph failure, matched by method and path substring."""

    status: int
    code: str
    message: str
    retry_after: float | None
    method: str | None
    path: str | None
    remaining: int | None  # None: forever

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or self.path in path


@dataclass
class TokenFault:
    """An injected failure of the token endpoint for one grant type."""

    grant_type: str | None
    error: str
    description: str
    status: int
    remaining: int | None

    def matches(self, grant_type: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.grant_type is None or self.grant_type == grant_type


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the Graph side answered. No Authorization value is kept."""

    method: str
    path: str
    query: str
    status: int
    mailbox: str | None
    body: Any  # parsed JSON, or None
    body_size: int
    had_authorization: bool


@dataclass(frozen=True, slots=True)
class RecordedTokenRequest:
    """One token endpoint request: its grant, client and outcome."""

    grant_type: str
    client_id: str
    status: int
    error: str | None


@dataclass
class Subscription:
    """A change-notification subscription, as Graph keeps it."""

    id: str
    app_id: str
    creator_id: str | None
    user_id: str
    collection: str
    """What it watches: ``inbox``, ``events``, ``todo:<list id>``, ``drive``."""
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: float

    def watches(self, user_id: str, collection: str, change_type: str) -> bool:
        return (
            self.user_id == user_id
            and self.collection == collection
            and change_type in self.change_types
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One change to an item, numbered; delta queries read these."""

    seq: int
    user_id: str
    collection: str
    item_id: str
    change_type: str  # created, updated or deleted
    etag: str | None


@dataclass(frozen=True, slots=True)
class SentNotification:
    """One POST of notifications to a subscriber: what, where, and the answer."""

    url: str
    body: JSON
    attempt: int
    status: int | None
    error: str | None
    seconds: float
    lifecycle: bool

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def items(self) -> list[JSON]:
        return list(self.body.get("value", []))


@dataclass(frozen=True, slots=True)
class SentMail:
    """A message accepted by ``sendMail``, as the mailbox received it."""

    mailbox: str
    message: JSON
    save_to_sent_items: bool

    @property
    def subject(self) -> str:
        return str(self.message.get("subject") or "")

    @property
    def to(self) -> list[str]:
        return addresses(self.message, "toRecipients")

    @property
    def cc(self) -> list[str]:
        return addresses(self.message, "ccRecipients")


def addresses(message: JSON, key: str) -> list[str]:
    """The addresses of a message's ``toRecipients``, ``ccRecipients``, ..."""
    return [
        str(recipient.get("emailAddress", {}).get("address"))
        for recipient in message.get(key) or []
    ]


class Tenant:
    """The whole simulated tenant, with the knobs tests turn.

    Handlers run on the event loop of whichever server or transport serves
    the request, and the identity side may be served from another thread
    than the Graph side: every change happens under ``lock``.
    """

    def __init__(self, tenant_id: str, clock: Callable[[], float]) -> None:
        self.tenant_id = tenant_id
        self.clock = clock
        self.lock = threading.RLock()

        self.apps: dict[str, App] = {}
        self.users: dict[str, User] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.faults: list[Fault] = []
        self.token_faults: list[TokenFault] = []
        self.chunks_to_drop = 0

        # What tests inspect.
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[RecordedTokenRequest] = []
        self.sent_mail: list[SentMail] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.notifications: list[SentNotification] = []
        self.validations: list[tuple[str, int | None]] = []

        # Change notifications.
        self.subscriptions: dict[str, Subscription] = {}
        self.changes: list[Change] = []
        self.outbox: list[tuple[Subscription, JSON, bool]] = []
        self.muted: set[str] = set()
        # Delta tokens below this change number are refused as expired.
        self.delta_floor = 0

        # Knobs.
        self.access_token_lifetime = 3600
        self.refresh_token_lifetime = 90 * 24 * 3600
        self.code_lifetime = 600
        # Outlook allows four concurrent requests per app and mailbox [doc].
        self.concurrency_limit = 4
        self.latency = 0.0
        # Seconds between making a change (any request but GET) and
        # answering it: an answer lost in transit after the change was made.
        self.answer_delay = 0.0
        # GUESS: the simple upload limit; the docs say 4 MB, newer pages 250 MB.
        self.simple_upload_limit = 4 * 1024 * 1024
        self.page_size: int | None = None
        # GUESS: Entra ID lets confidential web apps skip PKCE; we insist.
        self.require_pkce = True
        # The sources disagree on app-only To Do (msgraph.md 2.1).
        self.allow_app_only_todo = True
        self.deny_consent = False
        self.sign_in_as: str | None = None
        # Subscriptions. Graph requires https notification URLs [doc]; the
        # simulator also takes plain http on loopback, for tests and the demo.
        self.allow_http_loopback_notifications = True
        # The docs allow To Do subscriptions only under /me (delegated);
        # GUESS: app-only /users/{id}/todo/... is accepted unless this is off.
        self.allow_app_only_todo_subscriptions = True
        self.validation_timeout = 10.0  # seconds [doc]
        # Graph retries failed deliveries with back-off for up to 4 hours
        # [doc]; the simulator's back-off, scaled down (GUESS for the steps).
        self.notification_retry_delays: tuple[float, ...] = (0.05, 0.2, 0.5)
        self.notification_timeout = 10.0
        # Each delivery is sent this many extra times, as Graph's repeats.
        self.duplicate_deliveries = 0
        # The next N notifications carry a wrong clientState.
        self.forge_client_states = 0
        self.slow_seconds = 2.9  # a response slower than this counts as slow
        self.notification_transport: Any = None  # httpx transport, else network

    def find_user(self, key: str) -> User | None:
        """A user by object id or user principal name (case-insensitive)."""
        folded = key.casefold()
        for user in self.users.values():
            if user.id == key or user.upn.casefold() == folded:
                return user
        return None

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def take_token_fault(self, grant_type: str) -> TokenFault | None:
        for fault in self.token_faults:
            if fault.matches(grant_type):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

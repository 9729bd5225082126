"""The Microsoft 365 simulator: one tenant's identity provider and Graph.

Build one, add an app registration and users, then point msal at
``{base}/{tenant_id}`` and the Graph client at ``{base}`` (or use
``transport()`` in-process). Tests turn the knobs on the object (token
lifetimes, latency, page size) and inject faults through its methods.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import httpx
from starlette.applications import Starlette

from brokerhooks.simulators.msgraph import graph, identity, subscriptions
from brokerhooks.simulators.msgraph.common import JSON, graph_timestamp, new_id
from brokerhooks.simulators.msgraph.drive import Drive
from brokerhooks.simulators.msgraph.fields import new_etag
from brokerhooks.simulators.msgraph.mail import new_message
from brokerhooks.simulators.msgraph.state import (
    App,
    Fault,
    RecordedRequest,
    SentNotification,
    Subscription,
    Tenant,
    TokenFault,
    User,
)
from brokerhooks.simulators.msgraph.todo import default_task_list

_DEFAULT_FAULT_TEXT = {
    429: ("TooManyRequests", "Too many requests, retry after the time given."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable."),
    504: ("gatewayTimeout", "The gateway timed out."),
}


class MicrosoftGraphSimulator(Tenant):
    """A tenant with its identity provider and Graph v1.0, as a Starlette app."""

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(tenant_id or str(uuid.uuid4()), clock)
        self.app = Starlette(routes=[*graph.routes(self), *identity.routes(self)])

    def transport(self) -> httpx.ASGITransport:
        """An httpx transport that calls the simulator in-process."""
        return httpx.ASGITransport(app=self.app)

    # Set-up.

    def add_app(
        self,
        client_id: str,
        client_secret: str,
        *,
        redirect_uris: tuple[str, ...] = (),
    ) -> App:
        """Register a confidential client (an Entra ID app registration)."""
        app = App(client_id, client_secret, redirect_uris)
        with self.lock:
            self.apps[client_id] = app
        return app

    def add_user(self, upn: str, display_name: str | None = None) -> User:
        """Add a user with an empty mailbox, the default To Do list and a drive."""
        user_id = str(uuid.uuid4())
        name = display_name or upn.split("@", 1)[0].replace(".", " ").title()
        user = User(
            id=user_id,
            upn=upn,
            display_name=name,
            drive=Drive(upn, user_id, name),
        )
        default = default_task_list()
        user.task_lists[default.resource["id"]] = default
        user.drive.on_change = lambda item_id, change: subscriptions.record_change(
            self, user, "drive", item_id, change
        )
        with self.lock:
            self.users[user_id] = user
        return user

    def user(self, key: str) -> User:
        """A user by UPN or object id; KeyError if there is none."""
        with self.lock:
            found = self.find_user(key)
        if found is None:
            raise KeyError(key)
        return found

    def issue_access_token(
        self, upn: str | None = None, *, client_id: str | None = None
    ) -> str:
        """A Graph token without a sign-in: delegated for ``upn``, else app-only.

        For tests of Graph calls that need no msal.
        """
        user = self.user(upn) if upn else None
        with self.lock:
            app = self.apps[client_id] if client_id else next(iter(self.apps.values()))
            scopes = ("User.Read",) if user else (identity.GRAPH_DEFAULT_SCOPE,)
            return identity.issue_access_token(self, app, user, scopes).value

    # Changes that Graph notifies about.

    async def deliver_mail(
        self,
        upn: str,
        *,
        sender: str,
        subject: str,
        body: str = "",
        sender_name: str | None = None,
        headers: dict[str, str] | None = None,
        notify: bool = True,
    ) -> JSON:
        """A mail arrives in ``upn``'s inbox; subscribers are notified.

        ``headers``: internet headers the sender put on it (``x-...``).

        Returns once the notifications are delivered (or have failed every
        retry). ``notify=False`` loses them: only a delta query finds it.
        """
        with self.lock:
            user = self.user(upn)
            message = new_message(
                user,
                sender=sender,
                sender_name=sender_name,
                subject=subject,
                body=body,
                headers=headers,
            )
            user.messages[message["id"]] = message
            subscriptions.record_change(
                self,
                user,
                "inbox",
                message["id"],
                "created",
                etag=message["@odata.etag"],
                notify=notify,
            )
        await self.flush_notifications()
        return dict(message)

    async def complete_task(
        self, upn: str, list_id: str, task_id: str, *, notify: bool = True
    ) -> JSON:
        """Tick a To Do task off, as its owner does in the To Do app."""
        with self.lock:
            user = self.user(upn)
            task = user.task_lists[list_id].tasks[task_id]
            task["status"] = "completed"
            task["completedDateTime"] = {
                "dateTime": graph_timestamp().rstrip("Z"),
                "timeZone": "UTC",
            }
            task["lastModifiedDateTime"] = graph_timestamp()
            task["@odata.etag"] = new_etag()
            subscriptions.record_change(
                self,
                user,
                f"todo:{list_id}",
                task_id,
                "updated",
                etag=task["@odata.etag"],
                notify=notify,
            )
        await self.flush_notifications()
        return dict(task)

    async def move_event(
        self, upn: str, event_id: str, *, start: str, end: str, notify: bool = True
    ) -> JSON:
        """Move a calendar event, as its owner does in Outlook.

        ``start`` and ``end`` are UTC date-times (``2027-01-08T09:00:00``).
        """
        with self.lock:
            user = self.user(upn)
            event = user.events[event_id]
            event["start"] = {"dateTime": start, "timeZone": "UTC"}
            event["end"] = {"dateTime": end, "timeZone": "UTC"}
            event["lastModifiedDateTime"] = graph_timestamp()
            event["@odata.etag"] = new_etag()
            event["changeKey"] = new_id()
            subscriptions.record_change(
                self,
                user,
                "events",
                event_id,
                "updated",
                etag=event["@odata.etag"],
                notify=notify,
            )
        await self.flush_notifications()
        return dict(event)

    async def delete_event(self, upn: str, event_id: str) -> None:
        """Delete a calendar event, as its owner does in Outlook."""
        with self.lock:
            user = self.user(upn)
            del user.events[event_id]
            subscriptions.record_change(self, user, "events", event_id, "deleted")
        await self.flush_notifications()

    async def send_lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification: reauthorizationRequired,
        subscriptionRemoved (which also removes the subscription) or missed."""
        with self.lock:
            subscriptions.lifecycle(self, subscription_id, event)
        await self.flush_notifications()

    async def flush_notifications(self) -> None:
        """Send what is queued; wait for every delivery from this event loop."""
        subscriptions.dispatch(self)
        await subscriptions.flush()

    def expire_subscription(self, subscription_id: str) -> None:
        """Let a subscription lapse, as one nobody renewed does."""
        with self.lock:
            self.subscriptions[subscription_id].expires_at = self.clock() - 1

    def expire_delta_tokens(self) -> None:
        """Make every delta link given so far unusable (410)."""
        with self.lock:
            self.delta_floor = len(self.changes) + 1

    def active_subscriptions(self) -> list[Subscription]:
        """The subscriptions that have not expired, oldest first."""
        with self.lock:
            now = self.clock()
            return [
                replace(sub)
                for sub in self.subscriptions.values()
                if sub.expires_at > now
            ]

    def sent_notifications(
        self, *, lifecycle: bool | None = None
    ) -> list[SentNotification]:
        """Every POST of notifications so far, retries and repeats included."""
        with self.lock:
            return [
                sent
                for sent in self.notifications
                if lifecycle is None or sent.lifecycle == lifecycle
            ]

    def slow_deliveries(self) -> list[SentNotification]:
        """Deliveries answered slower than ``slow_seconds`` (2.9 s): the ones
        that would count towards Graph marking the endpoint slow [doc]."""
        with self.lock:
            return [
                sent for sent in self.notifications if sent.seconds > self.slow_seconds
            ]

    def messages(self, upn: str) -> list[JSON]:
        with self.lock:
            return list(self.user(upn).messages.values())

    # Faults.

    def inject_fault(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching Graph requests with ``status``.

        ``path`` matches a substring of the request path (``/v1.0/...`` or
        ``/upload/...``); ``times=None`` keeps the fault forever.
        """
        default_code, default_message = _DEFAULT_FAULT_TEXT.get(
            status, ("generalException", "An injected failure.")
        )
        with self.lock:
            self.faults.append(
                Fault(
                    status=status,
                    code=code or default_code,
                    message=message or default_message,
                    retry_after=retry_after,
                    method=method,
                    path=path,
                    remaining=times,
                )
            )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.token_faults.clear()
            self.chunks_to_drop = 0

    def fail_token_requests(
        self,
        *,
        grant_type: str | None = "refresh_token",
        error: str = "invalid_grant",
        description: str = (
            "AADSTS700082: The refresh token has expired due to inactivity."
        ),
        status: int = 400,
        times: int | None = None,
    ) -> None:
        """Make the token endpoint refuse ``grant_type`` with ``error``."""
        with self.lock:
            self.token_faults.append(
                TokenFault(grant_type, error, description, status, times)
            )

    def revoke_refresh_tokens(self, upn: str | None = None) -> int:
        """Revoke every refresh token (of one user); returns how many."""
        user = self.user(upn) if upn else None
        with self.lock:
            tokens = [
                token
                for token in self.refresh_tokens.values()
                if user is None or token.user_id == user.id
            ]
            for token in tokens:
                token.revoked = True
        return len(tokens)

    def expire_access_tokens(self) -> None:
        """Make Graph refuse every access token issued so far (401)."""
        with self.lock:
            for token in self.access_tokens.values():
                token.expires_at = 0

    def drop_upload_chunks(self, count: int = 1) -> None:
        """Acknowledge the next ``count`` upload chunks but lose them."""
        with self.lock:
            self.chunks_to_drop += count

    # Inspection.

    def task_lists(self, upn: str) -> list[JSON]:
        with self.lock:
            return [
                task_list.resource for task_list in self.user(upn).task_lists.values()
            ]

    def tasks(self, upn: str, list_id: str) -> list[JSON]:
        with self.lock:
            return list(self.user(upn).task_lists[list_id].tasks.values())

    def events(self, upn: str) -> list[JSON]:
        with self.lock:
            return list(self.user(upn).events.values())

    def drive_item(self, upn: str, path: str) -> JSON | None:
        """The driveItem at ``path`` ("Deals/Smith/a.pdf"), or None."""
        with self.lock:
            drive = self.user(upn).drive
            item = drive.resolve(drive.item("root"), path)
            return drive.to_json(item) if item is not None else None

    def file_content(self, upn: str, path: str) -> bytes | None:
        with self.lock:
            drive = self.user(upn).drive
            item = drive.resolve(drive.item("root"), path)
            return item.content if item is not None and not item.is_folder else None

    def graph_requests(self, method: str | None = None) -> list[RecordedRequest]:
        """The Graph and upload requests answered so far, oldest first."""
        with self.lock:
            return [
                request
                for request in self.requests
                if method is None or request.method == method
            ]

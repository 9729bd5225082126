"""``GraphClient``: the Microsoft Graph calls brokerhooks makes, on httpx.

One client acts for one mailbox: ``/me`` for a delegated connection, or
``/users/{mailbox}`` for an app-only one. Every call

- takes a token from the provider, and on a 401 asks it once for a fresh one;
- waits for one of four slots of its mailbox (Outlook allows four concurrent
  requests per app and mailbox; the slots are shared by every client of
  the mailbox in this event loop);
- on 429, 503 and 504 waits ``Retry-After`` (or 1, 2, 4 s) and tries again,
  up to ``max_retries`` times and while the wait is at most
  ``max_retry_wait``, then raises TransientError carrying ``retry_after``;
- turns other failures into the errors of ``msgraph.errors``, with Graph's
  ``error.code`` and ``error.message`` in the message.

Tokens go only into the Authorization header of requests to ``graph_url``;
upload-session URLs (which carry their own credential) get none, and are
never written into messages or logs.
"""

from __future__ import annotations

import asyncio
import email.utils
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx
import structlog

from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.errors import (
    GraphConflict,
    GraphNotFound,
    GraphRequestError,
)
from brokerhooks.connectors.msgraph.resources import (
    JSON,
    ConflictBehavior,
    EventFields,
    MailMessage,
    TaskFields,
)
from brokerhooks.security.secrets import Secret

log = structlog.get_logger("brokerhooks.connectors.msgraph")

GRAPH_URL = "https://graph.microsoft.com"
MAILBOX_CONCURRENCY = 4
RETRY_STATUSES = frozenset({429, 503, 504})
# Asks Outlook for ids that stay the same when a message moves between
# folders, so that a draft's id still finds it once sent.
IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
# Simple uploads up to 4 MB; larger files go through an upload session,
# safe under both the old 4 MB and the newer 250 MB limit.
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
# Upload session chunks are multiples of 320 KiB [doc].
CHUNK_MULTIPLE = 320 * 1024
DEFAULT_CHUNK_SIZE = 10 * CHUNK_MULTIPLE

Sleep = Callable[[float], Awaitable[None]]


class AccessTokenProvider(Protocol):
    """Gives an access token for Graph; a fresh one when forced."""

    async def __call__(self, *, force_refresh: bool = False) -> Secret: ...


_slots: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


def mailbox_slots(mailbox: str) -> asyncio.Semaphore:
    """The semaphore of ``mailbox`` in the running event loop."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(
        mailbox.casefold(), asyncio.Semaphore(MAILBOX_CONCURRENCY)
    )


class GraphClient:
    """Graph v1.0 for one mailbox. Use as ``async with``, or call ``aclose``."""

    def __init__(
        self,
        *,
        token_provider: AccessTokenProvider,
        mailbox: str,
        app_only: bool,
        graph_url: str = GRAPH_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if chunk_size <= 0 or chunk_size % CHUNK_MULTIPLE:
            raise ValueError(f"chunk_size must be a multiple of {CHUNK_MULTIPLE}")
        self.mailbox = mailbox
        self._tokens = token_provider
        self._base = graph_url.rstrip("/") + "/v1.0"
        self._user = f"/users/{_segment(mailbox)}" if app_only else "/me"
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False
        )
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        self._chunk_size = chunk_size
        self._sleep = sleep
        self._drive_id: str | None = None

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # To Do.

    async def list_task_lists(self) -> list[JSON]:
        return await self._get_all(f"{self._user}/todo/lists")

    async def find_or_create_task_list(self, display_name: str) -> JSON:
        """The list called ``display_name`` (any case), created if missing."""
        for task_list in await self.list_task_lists():
            if str(task_list.get("displayName", "")).casefold() == (
                display_name.casefold()
            ):
                return task_list
        return await self._json(
            "POST", f"{self._user}/todo/lists", json={"displayName": display_name}
        )

    async def create_task(self, list_id: str, task: TaskFields) -> JSON:
        if not task.title:
            raise ValueError("a To Do task needs a title")
        return await self._json(
            "POST",
            f"{self._user}/todo/lists/{_segment(list_id)}/tasks",
            json=task.to_graph(creating=True),
        )

    async def get_task(
        self, list_id: str, task_id: str, *, expand_linked_resources: bool = False
    ) -> JSON:
        path = self._task_path(list_id, task_id)
        if expand_linked_resources:
            path += "?$expand=linkedResources"
        return await self._json("GET", path)

    async def list_tasks(
        self, list_id: str, *, expand_linked_resources: bool = False
    ) -> list[JSON]:
        path = f"{self._user}/todo/lists/{_segment(list_id)}/tasks"
        if expand_linked_resources:
            path += "?$expand=linkedResources"
        return await self._get_all(path)

    async def update_task(
        self, list_id: str, task_id: str, changes: TaskFields
    ) -> JSON:
        return await self._json(
            "PATCH",
            self._task_path(list_id, task_id),
            json=changes.to_graph(creating=False),
        )

    def _task_path(self, list_id: str, task_id: str) -> str:
        return f"{self._user}/todo/lists/{_segment(list_id)}/tasks/{_segment(task_id)}"

    # Mail.

    async def send_mail(
        self, message: MailMessage, *, save_to_sent_items: bool = True
    ) -> None:
        """Hand a mail to Exchange (202: accepted, not yet delivered).

        sendMail has no idempotency key: a retry after a lost answer can
        send twice. Only 429/503/504 are retried here, which Graph answers
        before taking the mail.
        """
        await self._call(
            "POST",
            f"{self._user}/sendMail",
            json=message.to_graph(save_to_sent_items=save_to_sent_items),
        )

    async def create_draft(self, message: MailMessage) -> str:
        """Save ``message`` in Drafts; return its id, which sending keeps."""
        draft = _json_of(
            await self._call(
                "POST",
                f"{self._user}/messages",
                json=message.fields(),
                headers=IMMUTABLE_IDS,
            )
        )
        return str(draft["id"])

    async def send_draft(self, message_id: str) -> None:
        """Send a draft (202); it moves to Sent Items under the same id."""
        await self._call(
            "POST",
            f"{self._user}/messages/{_segment(message_id)}/send",
            headers=IMMUTABLE_IDS,
        )

    async def delete_draft(self, message_id: str) -> None:
        """Delete a draft that will not be sent; one already gone is no error."""
        try:
            await self._call(
                "DELETE",
                f"{self._user}/messages/{_segment(message_id)}",
                headers=IMMUTABLE_IDS,
            )
        except GraphNotFound:
            return

    async def is_draft(self, message_id: str) -> bool | None:
        """True while the message is a draft, False once sent, None if gone."""
        try:
            found = _json_of(
                await self._call(
                    "GET",
                    f"{self._user}/messages/{_segment(message_id)}",
                    params={"$select": "isDraft"},
                    headers=IMMUTABLE_IDS,
                )
            )
        except GraphNotFound:
            return None
        return bool(found.get("isDraft"))

    async def get_message(self, message_id: str, *, select: str | None = None) -> JSON:
        path = f"{self._user}/messages/{_segment(message_id)}"
        if select:
            path += f"?$select={select}"
        return await self._json("GET", path)

    # Calendar.

    async def create_event(self, event: EventFields, *, transaction_id: str) -> JSON:
        """Create an event; the same ``transaction_id`` never makes a second."""
        if event.start is None or event.end is None:
            raise ValueError("an event needs a start and an end")
        return await self._json(
            "POST",
            f"{self._user}/events",
            json={**event.to_graph(), "transactionId": transaction_id},
        )

    async def get_event(self, event_id: str) -> JSON:
        return await self._json("GET", f"{self._user}/events/{_segment(event_id)}")

    async def update_event(self, event_id: str, changes: EventFields) -> JSON:
        return await self._json(
            "PATCH",
            f"{self._user}/events/{_segment(event_id)}",
            json=changes.to_graph(),
        )

    async def cancel_event(self, event_id: str, *, comment: str = "") -> None:
        """Cancel a meeting the mailbox organises; attendees are told."""
        await self._call(
            "POST",
            f"{self._user}/events/{_segment(event_id)}/cancel",
            json={"comment": comment},
        )

    async def delete_event(self, event_id: str) -> None:
        await self._call("DELETE", f"{self._user}/events/{_segment(event_id)}")

    # OneDrive.

    async def drive_id(self) -> str:
        if self._drive_id is None:
            drive = await self._json("GET", f"{self._user}/drive")
            self._drive_id = str(drive["id"])
        return self._drive_id

    async def get_drive_item(self, item_id: str) -> JSON:
        drive = _segment(await self.drive_id())
        return await self._json("GET", f"/drives/{drive}/items/{_segment(item_id)}")

    async def get_item_by_path(self, path: str) -> JSON | None:
        """The item at ``path`` ("Deals/Smith"), or None if there is none."""
        try:
            return await self._json("GET", await self._item(path))
        except GraphNotFound:
            return None

    async def create_folder(
        self,
        parent_path: str,
        name: str,
        *,
        conflict_behavior: ConflictBehavior = "fail",
    ) -> JSON:
        """Create a folder; GraphConflict if it exists and behaviour is fail."""
        return await self._json(
            "POST",
            await self._item(parent_path, "/children"),
            json={
                "name": _check_name(name),
                "folder": {},
                "@microsoft.graph.conflictBehavior": conflict_behavior,
            },
        )

    async def ensure_folder(self, path: str) -> JSON:
        """The folder at ``path``, creating each missing folder on the way."""
        parent = ""
        folder: JSON | None = None
        for name in _split(path):
            here = f"{parent}/{name}" if parent else name
            found = await self.get_item_by_path(here)
            if found is None:
                try:
                    found = await self.create_folder(parent, name)
                except GraphConflict:
                    # Another run made it between our look and our create.
                    found = await self._json("GET", await self._item(here))
            if "folder" not in found:
                raise PermanentError(
                    f"OneDrive of {self.mailbox}: {here!r} is a file, not a folder"
                )
            folder, parent = found, here
        if folder is None:
            folder = await self._json("GET", await self._item(""))
        return folder

    async def upload_file(
        self,
        folder_path: str,
        name: str,
        content: bytes,
        *,
        conflict_behavior: ConflictBehavior = "replace",
    ) -> JSON:
        """Upload a file into an existing folder; the driveItem comes back.

        Up to 4 MB in one PUT; larger files in an upload session, chunk by
        chunk, resuming where Graph's ``nextExpectedRanges`` says.
        """
        path = "/".join([*_split(folder_path), _check_name(name)])
        if len(content) <= SIMPLE_UPLOAD_LIMIT:
            url = await self._item(path, "/content")
            response = await self._call(
                "PUT",
                url,
                content=content,
                params={"@microsoft.graph.conflictBehavior": conflict_behavior},
                headers={"Content-Type": "application/octet-stream"},
            )
            return _json_of(response)
        session = await self._json(
            "POST",
            await self._item(path, "/createUploadSession"),
            json={
                "item": {
                    "@microsoft.graph.conflictBehavior": conflict_behavior,
                    "name": name,
                }
            },
        )
        return await self._upload_chunks(str(session["uploadUrl"]), content)

    async def _upload_chunks(self, upload_url: str, content: bytes) -> JSON:
        total = len(content)
        offset = 0
        # Each round sends a chunk; Graph may ask for some again, but not
        # forever.
        for _ in range(4 * (total // self._chunk_size + 1)):
            end = min(offset + self._chunk_size, total)
            response = await self._call(
                "PUT",
                upload_url,
                content=content[offset:end],
                headers={"Content-Range": f"bytes {offset}-{end - 1}/{total}"},
                authorized=False,
            )
            if response.status_code in (200, 201):
                return _json_of(response)
            offset = _next_offset(_json_of(response), total)
        raise TransientError(
            f"OneDrive of {self.mailbox} kept asking for the same parts of an "
            "upload; the upload will start again on the next attempt"
        )

    async def _item(self, path: str, tail: str = "") -> str:
        """``/drives/{id}/items/root:/a/b:`` plus ``tail``, for a path."""
        names = _split(path)
        address = "root"
        if names:
            address += ":/" + "/".join(_segment(name) for name in names) + ":"
        return f"/drives/{_segment(await self.drive_id())}/items/{address}{tail}"

    # Change notifications.

    @property
    def user_path(self) -> str:
        """``/me`` or ``/users/{mailbox}``: where this client's resources live."""
        return self._user

    async def create_subscription(self, subscription: JSON) -> JSON:
        """Create a subscription; Graph first validates the notification URL."""
        return await self._json("POST", "/subscriptions", json=subscription)

    async def renew_subscription(self, subscription_id: str, expires: datetime) -> JSON:
        """Move a subscription's expiry (which also reauthorizes it) [doc]."""
        return await self._json(
            "PATCH",
            f"/subscriptions/{_segment(subscription_id)}",
            json={"expirationDateTime": graph_datetime(expires)},
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._call("DELETE", f"/subscriptions/{_segment(subscription_id)}")

    async def delta(self, path_or_link: str) -> tuple[list[JSON], str | None]:
        """Every change a delta query returns, and the link for the next one.

        ``path_or_link`` is a delta path (``{user}/.../delta``) for the first
        query or the ``@odata.deltaLink`` a previous one gave.
        """
        items: list[JSON] = []
        url: str | None = self._relative(path_or_link)
        delta_link: str | None = None
        while url is not None:
            page = await self._json("GET", url)
            items.extend(page.get("value", []))
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink") or delta_link
            url = self._relative(next_link) if next_link else None
        return items, delta_link

    def _relative(self, path_or_link: str) -> str:
        """A path under Graph's base URL; PermanentError for another host."""
        if not path_or_link.startswith(("http://", "https://")):
            return path_or_link
        if not path_or_link.startswith(self._base + "/"):
            raise PermanentError(
                "Microsoft Graph sent a link to another host: "
                f"{urlsplit(path_or_link).netloc}"
            )
        return path_or_link[len(self._base) :]

    # Requests.

    async def _json(self, method: str, path: str, *, json: JSON | None = None) -> JSON:
        return _json_of(await self._call(method, path, json=json))

    async def _get_all(self, path: str) -> list[JSON]:
        """Every item of a collection, following ``@odata.nextLink``."""
        items: list[JSON] = []
        url: str | None = path
        while url is not None:
            page = await self._json("GET", url)
            items.extend(page.get("value", []))
            url = page.get("@odata.nextLink")
            if url is not None and not url.startswith(self._base + "/"):
                raise PermanentError(
                    f"Microsoft Graph sent a next page link to another host: "
                    f"{urlsplit(url).netloc}"
                )
            if url is not None:
                url = url[len(self._base) :]
        return items

    async def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        json: JSON | None = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        """One Graph call with its retries; the successful response."""
        url = self._base + path_or_url if authorized else path_or_url
        what = f"{method} {path_or_url}" if authorized else f"{method} upload session"
        force_refresh = refreshed = False
        retries = 0
        while True:
            request_headers = dict(headers or {})
            if authorized:
                token = await self._tokens(force_refresh=force_refresh)
                request_headers["Authorization"] = f"Bearer {token.reveal()}"
                force_refresh = False
            response = await self._send(
                what, method, url, json, content, params, request_headers
            )

            if response.status_code == 401 and authorized and not refreshed:
                log.info("msgraph_token_refused", mailbox=self.mailbox, call=what)
                force_refresh = refreshed = True
                continue
            if response.status_code in RETRY_STATUSES:
                await self._wait_or_give_up(response, what, retries)
                retries += 1
                continue
            if response.is_success:
                return response
            raise _failure(what, self.mailbox, response)

    async def _wait_or_give_up(
        self, response: httpx.Response, what: str, retries: int
    ) -> None:
        """Sleep as Graph asks; TransientError once retrying is not worth it."""
        wait = _retry_after(response, retries)
        if retries >= self._max_retries or wait > self._max_retry_wait:
            raise TransientError(
                f"Microsoft Graph answered {_describe(response)} to {what} "
                f"for {self.mailbox}; try again in {wait:g}s",
                retry_after=wait,
            )
        log.warning(
            "msgraph_retry",
            mailbox=self.mailbox,
            call=what,
            status=response.status_code,
            retry_after=wait,
            retry=retries + 1,
        )
        await self._sleep(wait)

    async def _send(
        self,
        what: str,
        method: str,
        url: str,
        json: JSON | None,
        content: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        try:
            async with mailbox_slots(self.mailbox):
                return await self._http.request(
                    method,
                    url,
                    json=json,
                    content=content,
                    params=params,
                    headers=headers,
                )
        except httpx.TimeoutException:
            raise TransientError(
                f"Microsoft Graph did not answer {what} for {self.mailbox} in time"
            ) from None
        except httpx.TransportError as error:
            raise TransientError(
                f"Microsoft Graph could not be reached for {what}: "
                f"{type(error).__name__}"
            ) from None


def graph_datetime(moment: datetime) -> str:
    """UTC with seven fractional digits and ``Z``, as Graph writes times."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no zone; give an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _segment(value: str) -> str:
    return quote(value, safe="@")


def _split(path: str) -> list[str]:
    return [name for name in path.strip().split("/") if name]


def _check_name(name: str) -> str:
    if not name or any(character in name for character in '"*:<>?/\\|'):
        raise ValueError(f"{name!r} is not a valid OneDrive name")
    return name


def _json_of(response: httpx.Response) -> JSON:
    try:
        value = response.json()
    except ValueError:
        raise TransientError(
            f"Microsoft Graph answered {response.status_code} without JSON"
        ) from None
    if not isinstance(value, dict):
        raise TransientError("Microsoft Graph answered JSON that is not an object")
    return value


def _next_offset(status: JSON, total: int) -> int:
    """Where ``nextExpectedRanges`` ("1048576-" or "0-327679") says to go on."""
    ranges = status.get("nextExpectedRanges") or []
    try:
        start = int(str(ranges[0]).split("-", 1)[0])
    except (IndexError, ValueError):
        raise TransientError(
            "OneDrive did not say which part of the upload comes next"
        ) from None
    if not 0 <= start < total:
        raise TransientError(f"OneDrive asked for byte {start} of {total}")
    return start


def _retry_after(response: httpx.Response, retries: int) -> float:
    """Seconds to wait: Retry-After (seconds or a date), else 1, 2, 4..."""
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                pass
            else:
                return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return float(2**retries)


def _graph_error(response: httpx.Response) -> tuple[str, str]:
    """Graph's ``error.code`` and ``error.message``, if the body has them."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", ""


def _describe(response: httpx.Response) -> str:
    code, message = _graph_error(response)
    text = f"{response.status_code}"
    if code:
        text += f" {code}"
    if message:
        text += f" ({message})"
    return text


_ADVICE = {
    400: "the request was refused as malformed; check the values the rule sends",
    401: "the access token was refused twice; reconnect the Microsoft 365 "
    "connection (`brokerhooks connections m365 connect`)",
    403: "the app registration lacks a permission or admin consent for this "
    "mailbox (Tasks.ReadWrite, Mail.ReadWrite, Mail.Send, Calendars.ReadWrite, "
    "Files.ReadWrite)",
    404: "it does not exist, or was deleted in Microsoft 365",
    409: "an item with that name already exists",
    413: "the content is too large",
}


def _failure(what: str, mailbox: str, response: httpx.Response) -> Exception:
    status = response.status_code
    code, _ = _graph_error(response)
    message = f"Microsoft Graph answered {_describe(response)} to {what} for {mailbox}"
    if status >= 500:
        return TransientError(message)
    advice = _ADVICE.get(status)
    if advice:
        message += f": {advice}"
    kind = {404: GraphNotFound, 409: GraphConflict}.get(status, GraphRequestError)
    return kind(message, status_code=status, code=code)

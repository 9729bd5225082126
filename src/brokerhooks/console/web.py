"""What every console page shares: who is signed in, forms, rendering.

Every page handler takes a ``Page`` and returns a response. ``Console.serve``
builds the page around it, in this order:

1. the session cookie must name a live session, else the browser is sent
   to the sign-in page (``401`` for a form post);
2. a POST must be a URL-encoded form of at most ``MAX_FORM_BYTES`` whose
   ``csrf`` field is the session's CSRF token, else ``403``;
3. admin pages answer ``404`` to everyone else;
4. ``NotFound`` from the handler (an id of another broker included)
   becomes a ``404`` page that says nothing of what exists.

Queries run in a worker thread inside one transaction (``Page.read``,
``Page.write``), as every query of the store is synchronous.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import jinja2
import structlog
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from brokerhooks.config import Settings
from brokerhooks.console import sessions
from brokerhooks.console.sessions import CookiePolicy, SignInThrottle
from brokerhooks.errors import NotFound, StoreUnavailable
from brokerhooks.runtime import Runtime
from brokerhooks.store import browse
from brokerhooks.store import users as user_store
from brokerhooks.store.brokers import BrokerRecord, list_brokers
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow
from brokerhooks.store.users import UserRecord

log = structlog.get_logger("brokerhooks.console")

PREFIX = "/console"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 512 * 1024
T = TypeVar("T")
R = TypeVar("R", bound=Response)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
}

# Messages shown after a redirect, by code: the text never comes from the URL.
NOTICES = {
    "replayed": "Replay queued: the event will be processed again shortly.",
    "not-replayed": (
        "Not queued: the event is already waiting or being processed, or it is "
        "unsupported."
    ),
    "bulk-replayed": "Queued {queued} event(s) for replay; skipped {skipped}.",
    "rule-saved": "Saved rule {rule}.",
    "rules-saved": "Saved {count} rule(s).",
    "rule-deleted": "Deleted rule {rule}.",
    "rule-enabled": "Rule {rule} is enabled.",
    "rule-disabled": "Rule {rule} is disabled: it no longer runs on new events.",
    "key-rotated": (
        "The SalesTrekker API key was replaced. Put the same key in SalesTrekker "
        "if it is not there yet; the old key stops working within seconds."
    ),
    "test-sent": "Test event accepted and stored as event {event}.",
    "m365-added": "Added Microsoft 365 connection {name}. Connect it next.",
    "m365-connected": "Microsoft 365 connection {name} is connected.",
    "m365-removed": "Disconnected and removed Microsoft 365 connection {name}.",
    "broker-added": "Added broker {name}.",
    "user-added": "Added user {name}.",
    "user-removed": "Removed user {name}.",
    "signed-out": "You are signed out.",
}
# Values a notice may carry: ids, names and counts only.
_NOTICE_VALUE = re.compile(r"^[\w.@ +-]{1,100}$")


class Form:
    """A URL-encoded form: every value of every field, in order."""

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        self._pairs = pairs or []

    def get(self, name: str, default: str = "") -> str:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user and the broker in view.

    ``broker_id`` is the user's broker; for an admin, the broker picked in
    the header, or None for every broker.
    """

    user: UserRecord
    csrf_token: str
    brokers: list[BrokerRecord] = field(default_factory=list)
    broker_id: str | None = None
    broker_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin

    def can_see(self, broker_id: str | None) -> bool:
        return broker_id is not None and (
            self.is_admin or broker_id == self.user.broker_id
        )


class NeedBroker(Exception):
    """An admin opened a page about one broker without picking one."""


class FormRejected(Exception):
    """A POST that is not a form this console can read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[["Page"], Awaitable[Response]]


@dataclass
class Page:
    """One request to a console page, with its viewer and form."""

    request: Request
    console: Console
    viewer: Viewer | None
    form: Form

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.request.app.state.runtime
        return runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def signed_in(self) -> Viewer:
        assert self.viewer is not None, "page served without a viewer"
        return self.viewer

    @property
    def broker_id(self) -> str | None:
        """The broker whose data the page shows; None: every broker (admins)."""
        return self.signed_in.broker_id

    def require_broker(self) -> str:
        """The broker in view; NeedBroker when an admin has not picked one."""
        if self.signed_in.broker_id is None:
            raise NeedBroker
        return self.signed_in.broker_id

    async def read(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work, False)

    async def write(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work, True)

    def _run(self, work: Callable[[Connection], T], write: bool) -> T:
        with transaction(self.runtime.engine, write=write) as connection:
            return work(connection)

    def check_event(self, connection: Connection, event_id: str) -> None:
        """NotFound unless the event exists and the viewer may see it."""
        if not self.signed_in.can_see(browse.event_broker(connection, event_id)):
            raise NotFound(f"no event {event_id} for this viewer")

    def render(
        self, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        return self.console.render(self, template, status=status, **values)

    def redirect(self, path: str, notice: str | None = None, **params: Any) -> Response:
        """303 to a console path, with a notice to show there."""
        query = {key: str(value) for key, value in params.items() if value is not None}
        if notice is not None:
            query["notice"] = notice
        target = PREFIX + path + (("?" + urlencode(query)) if query else "")
        return RedirectResponse(target, status_code=303)

    def notice(self) -> str | None:
        """The message named by ``?notice=``, filled with its values."""
        params = self.request.query_params
        text = NOTICES.get(params.get("notice", ""))
        if text is None:
            return None
        values = {
            key: value
            for key, value in params.items()
            if key != "notice" and _NOTICE_VALUE.match(value)
        }
        try:
            return text.format(**values)
        except (KeyError, IndexError):
            return None


def when(moment: datetime | str | None, zone: str) -> str:
    """A timestamp in the console's time zone, to the minute."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    else:
        parsed = moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def make_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["root"] = PREFIX
    environment.filters["pretty"] = pretty
    environment.filters["compact"] = compact
    return environment


def pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept (escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class Console:
    """What the console keeps between requests: templates and throttles."""

    def __init__(self) -> None:
        self.templates = make_environment()
        self._throttle: SignInThrottle | None = None

    def throttle(self, runtime: Runtime) -> SignInThrottle:
        """The sign-in throttle, counting in ``runtime``'s store."""
        if self._throttle is None:
            self._throttle = SignInThrottle(runtime.failures)
        return self._throttle

    def cookies(self, request: Request) -> CookiePolicy:
        settings: Settings = request.app.state.runtime.settings
        return CookiePolicy.for_public_url(settings.public_url)

    def render(
        self, page: Page, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        settings = page.settings
        zone = settings.timezone
        context = {
            "viewer": page.viewer,
            "path": page.request.url.path,
            "notice": page.notice(),
            "error": None,
            "section": None,
            "when": lambda moment: when(moment, zone),
            "query": _query,
            **values,
        }
        body = self.templates.get_template(template).render(context)
        return secured(HTMLResponse(body, status_code=status))

    def handle(
        self, handler: Handler, *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint serving ``handler`` to signed-in users."""

        async def endpoint(request: Request) -> Response:
            return secured(await self._serve(request, handler, admin=admin))

        return endpoint

    def handle_public(
        self, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint for a page that needs no session (sign-in)."""

        async def endpoint(request: Request) -> Response:
            page = Page(request, self, None, Form())
            try:
                if request.method == "POST":
                    page.form = await read_form(request)
                return secured(await handler(page))
            except FormRejected as rejected:
                return self.problem(page, rejected.status, rejected.message)
            except StoreUnavailable:
                return self.unavailable(page)

        return endpoint

    async def _serve(
        self, request: Request, handler: Handler, *, admin: bool
    ) -> Response:
        page = Page(request, self, None, Form())
        try:
            page.viewer = await self.viewer(request)
            if page.viewer is None:
                return self._to_sign_in(request)
            if admin and not page.viewer.is_admin:
                raise NotFound("admin page")
            if request.method == "POST":
                page.form = await read_form(request)
                if not sessions.same_token(
                    page.form.get("csrf"), page.viewer.csrf_token
                ):
                    raise FormRejected(
                        403,
                        "This form has expired or did not come from this console. "
                        "Go back, reload the page and try again.",
                    )
            return await handler(page)
        except NotFound:
            return self.problem(
                page,
                404,
                "There is nothing here: the address is wrong, or what it named "
                "has been removed.",
                title="Not found",
            )
        except NeedBroker:
            return page.render("pick_broker.html", status=409)
        except FormRejected as rejected:
            return self.problem(page, rejected.status, rejected.message)
        except StoreUnavailable:
            return self.unavailable(page)

    def problem(
        self, page: Page, status: int, message: str, *, title: str = "Not done"
    ) -> HTMLResponse:
        return page.render("problem.html", status=status, title=title, message=message)

    def unavailable(self, page: Page) -> HTMLResponse:
        log.warning("console_store_unavailable", path=page.request.url.path)
        return self.problem(
            page,
            503,
            "The database cannot be reached right now. Try again in a minute.",
            title="Unavailable",
        )

    def _to_sign_in(self, request: Request) -> Response:
        if request.method != "GET":
            return secured(
                HTMLResponse("Your session has ended; sign in again.", status_code=401)
            )
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        query = urlencode({"next": target})
        return secured(RedirectResponse(f"{PREFIX}/sign-in?{query}", status_code=303))

    async def viewer(self, request: Request) -> Viewer | None:
        """The viewer of a live session, or None; refreshes ``last_seen_at``."""
        policy = self.cookies(request)
        token = request.cookies.get(policy.session)
        if not token:
            return None
        runtime: Runtime = request.app.state.runtime
        picked = request.cookies.get(policy.broker)
        return await asyncio.to_thread(
            _load_viewer, runtime, sessions.token_hash(token), picked
        )


def _load_viewer(
    runtime: Runtime, token_hash: str, picked: str | None
) -> Viewer | None:
    now = utcnow()
    with transaction(runtime.engine) as connection:
        session = user_store.find_session(connection, token_hash)
        brokers = (
            list_brokers(connection)
            if session is not None and session.user.is_admin
            else []
        )
    if session is None:
        return None
    live = session.user.disabled_at is None and sessions.is_live(
        created_at=session.created_at,
        expires_at=session.expires_at,
        last_seen_at=session.last_seen_at,
        now=now,
    )
    if not live or now - session.last_seen_at > sessions.TOUCH_EVERY:
        with transaction(runtime.engine, write=True) as connection:
            if live:
                user_store.touch_session(connection, token_hash, now)
            else:
                user_store.delete_session(connection, token_hash)
    if not live:
        return None
    user = session.user
    if not user.is_admin:
        return Viewer(user, session.csrf_token, [], user.broker_id, user.broker_name)
    chosen = next((broker for broker in brokers if broker.id == picked), None)
    return Viewer(
        user,
        session.csrf_token,
        brokers,
        chosen.id if chosen else None,
        chosen.name if chosen else None,
    )


async def read_form(request: Request) -> Form:
    """The URL-encoded body of a POST; FormRejected when it is not one."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    declared = request.headers.get("content-length", "")
    if declared == "0":
        return Form()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRejected(415, "This page accepts only its own forms.")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormRejected(413, "The form is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormRejected(413, "The form is too large.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormRejected(400, "The form is not UTF-8 text.") from None
    return Form(parse_qsl(text, keep_blank_values=True))


def secured(response: R) -> R:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _query(values: Mapping[str, Any]) -> str:
    """A query string of the values that are set."""
    return urlencode(
        {key: value for key, value in values.items() if value not in (None, "")}
    )


def local_path(target: str | None) -> str:
    """``target`` if it is a console path of this site, else the overview."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "\n" not in target
        and "\r" not in target
    ):
        return target
    return PREFIX + "/"

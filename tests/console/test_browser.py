"""The console in real Chromium, driven by Playwright.

Events come from the real pipeline: the SalesTrekker simulator sends its
webhooks to the app over loopback and the app's worker processes them.
Microsoft 365 is its simulator, whose identity provider is served over
HTTPS with a throwaway CA. Each test saves screenshots of the pages it
visits under ``artifacts/screenshots/``.

Debian's ``chromium`` must be installed (``.ci/run`` installs it);
Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import Engine, select

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.pipeline.service import build_worker
from brokerhooks.runtime import Runtime
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.users import create_user
from tests.connectors.msgraph.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    authority_url,
    certificates,
    sim,
)
from tests.console.conftest import PASSWORD, password_hash
from tests.helpers import add_broker, queue_event, save_rules
from tests.servers import serve_in_thread

__all__ = ["authority_url", "certificates", "sim"]

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
API_KEY = "browser-test-key-5e4d3c2b1a0f9e8d7c6b"
ANN = "ann@acme.test"
ADMIN = "root@brokerhooks.test"
SETTLED = ("done", "needs_attention", "dead", "coalesced", "unsupported")
T = TypeVar("T")

MISTAKE = """\
rules:
  - id: approved-note
    name: Note when a deal is approved
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "Approved: {{ deal.nmae }}"
"""
FIXED = MISTAKE.replace("deal.nmae", "deal.name")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def in_thread(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end in a thread of its own.

    Playwright's sync API keeps an event loop running in this thread, so
    ``asyncio.run`` cannot be called here.
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(work()))  # type: ignore[arg-type]
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@dataclass
class Site:
    url: str
    engine: Engine
    salestrekker: SalesTrekkerSimulator
    broker_id: str

    def drive(self, change: Callable[[SalesTrekkerSimulator], Awaitable[Any]]) -> Any:
        """Change the simulator's data and wait for its webhooks to be sent."""

        async def run() -> Any:
            found = await change(self.salestrekker)
            await self.salestrekker.flush()
            return found

        return in_thread(run)

    def settled(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` events exist and none is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with transaction(self.engine) as connection:
                statuses = list(connection.scalars(select(Event.status)))
            if len(statuses) >= count and all(s in SETTLED for s in statuses):
                return
            time.sleep(0.05)
        raise AssertionError(f"events did not settle: {statuses}")


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Iterator[Site]:
    settings = settings.model_copy(
        update={"poll_seconds": 0.05, "coalesce_seconds": 0.0}
    )
    salestrekker = SalesTrekkerSimulator(API_KEY)
    with serve_in_thread(salestrekker.app) as salestrekker_url:
        runtime = Runtime.build(settings, engine)
        broker = add_broker(
            engine, runtime.vault, api_key=API_KEY, salestrekker_url=salestrekker_url
        )
        _add_user(engine, ANN, broker.id)
        _add_user(engine, ADMIN, None)
        worker = build_worker(engine, settings, metrics=runtime.metrics)
        with serve_in_thread(create_app(settings, runtime, worker)) as url:
            # The sign-in's redirect URI and the webhook URL name this server.
            runtime.settings = settings.model_copy(update={"public_url": url})
            salestrekker.webhook_url = url + "/hooks/salestrekker"
            yield Site(url, engine, salestrekker, broker.id)


def _add_user(engine: Engine, email: str, broker_id: str | None) -> None:
    with transaction(engine, write=True) as connection:
        create_user(
            connection,
            email=email,
            password_hash=password_hash(PASSWORD),
            broker_id=broker_id,
            is_admin=broker_id is None,
        )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, ignore_https_errors=True
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def phone_shot(page: Page, name: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def sign_in(page: Page, site: Site, email: str, target: str = "/console/") -> None:
    page.goto(site.url + target)
    expect(page).to_have_title(re.compile("^Sign in"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(site.url + target)


def nav(page: Page, name: str) -> Locator:
    """A link of the console's navigation."""
    return page.get_by_role("navigation", name="Console").get_by_role(
        "link", name=name, exact=True
    )


def approved_deal(site: Site) -> None:
    """A deal created, then moved to Approved, both processed."""
    deal = site.drive(lambda st: st.create_deal("Nguyen refinance", value=450000))
    site.settled(1)
    site.drive(lambda st: st.move_deal(deal, "6. Approved"))
    site.settled(2)


def test_sign_in_see_events_open_one_and_replay_it(site: Site, page: Page) -> None:
    save_rules(site.engine, site.broker_id, FIXED)
    approved_deal(site)
    missing = "6f0e9b9e-0000-4000-8000-000000000001"
    queue_event(site.engine, site.broker_id, "dealUpdated", missing)
    # The rule's note comes back from SalesTrekker as a noteCreated event.
    site.settled(4)

    page.goto(site.url + "/console/events")
    shot(page, "sign-in")
    sign_in(page, site, ANN, "/console/events")
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    expect(page.get_by_role("row")).to_have_count(5)
    shot(page, "events")

    page.get_by_label("Type").select_option("dealChangesStage")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("row")).to_have_count(2)
    page.get_by_role("row").nth(1).get_by_role("link").click()
    expect(page).to_have_title(re.compile("^dealChangesStage event"))
    changes = page.get_by_role("region", name="Changes")
    expect(changes.get_by_role("row", name=re.compile("^stage"))).to_contain_text(
        "6. Approved"
    )
    run = page.get_by_role("article")
    expect(run.get_by_role("heading", level=3)).to_contain_text(
        "Rule approved-note: fired"
    )
    expect(run).to_contain_text('changes.stage.to.name == "6. Approved"')
    expect(run.get_by_role("group").first).to_contain_text("Approved: Nguyen refinance")
    shot(page, "event")
    phone_shot(page, "event-phone")

    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("Replay queued")
    site.settled(4)
    page.reload()
    expect(page.get_by_role("table").last).to_contain_text("done")
    expect(page.get_by_role("region", name="Processing attempts")).to_contain_text("2")

    nav(page, "Needs attention").click()
    row = page.get_by_role("row", name=re.compile("dealUpdated"))
    expect(row).to_contain_text(missing)
    shot(page, "needs-attention")
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Replay selected").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Queued 1 event(s) for replay; skipped 0."
    )

    nav(page, "Overview").click()
    expect(page.get_by_role("img", name=re.compile("event"))).to_be_visible()
    shot(page, "overview")
    phone_shot(page, "overview-phone")


def test_connections_test_event_and_api_check(site: Site, page: Page) -> None:
    sign_in(page, site, ANN, "/console/connections")

    expect(page.get_by_label("Webhook URL")).to_have_value(
        site.url + "/hooks/salestrekker"
    )
    expect(page.locator("body")).not_to_contain_text(API_KEY)
    expect(page.get_by_role("main")).to_contain_text(API_KEY[:4] + "••••")
    page.get_by_role("button", name="Send a test event").click()
    expect(page.get_by_role("status")).to_contain_text("Test event accepted")
    page.get_by_role("button", name="Check SalesTrekker's API").click()
    expect(page.locator("#drift")).to_contain_text("nothing breaks")
    shot(page, "connections")


def test_write_a_rule_fix_its_mistake_and_back_test_it(site: Site, page: Page) -> None:
    approved_deal(site)
    sign_in(page, site, ANN, "/console/rules")

    page.get_by_role("link", name="New rule").click()
    editor = page.get_by_label("Rule (YAML)")
    editor.fill(MISTAKE)
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Line 10")
    expect(alert).to_contain_text("params.content")
    expect(alert).to_contain_text("'deal.nmae' is undefined")
    line = page.locator("#line-10")
    expect(line).to_have_class(re.compile("has-problem"))
    expect(line).to_contain_text("did you mean deal.name")
    alert.get_by_role("link", name="Line 10").click()
    expect(editor).to_be_focused()
    shot(page, "rule-error")

    editor.fill(FIXED)
    page.get_by_label("Events of").select_option("7d")
    page.get_by_role("button", name="Back-test").click()
    report = page.get_by_role("region", name="Back-test")
    expect(report).to_contain_text("the rules fired 1 time(s)")
    row = report.get_by_role("row", name=re.compile("dealChangesStage"))
    expect(row).to_contain_text("approved-note: fired")
    expect(row).to_contain_text("Approved: Nguyen refinance")
    shot(page, "rule-backtest")

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved rule approved-note")
    nav(page, "Rules").click()
    page.get_by_role("button", name="Disable approved-note").click()
    expect(page.get_by_role("status")).to_contain_text("approved-note is disabled")
    shot(page, "rules")

    page.get_by_role("link", name="Add from a recipe").click()
    shot(page, "recipes")
    page.get_by_role("link", name=re.compile("^Stage reached")).click()
    expect(page.get_by_label("connection")).to_have_value("office")
    shot(page, "recipe")


def test_connect_microsoft_365_through_its_sign_in(
    site: Site,
    page: Page,
    sim: MicrosoftGraphSimulator,
    authority_url: str,
    certificates: LoopbackCertificates,
) -> None:
    sign_in(page, site, ANN, "/console/connections")
    page.get_by_role("link", name="Add a Microsoft 365 connection").click()
    page.get_by_label("Name").fill("office")
    page.get_by_label("a person who signs in").check()
    page.get_by_label("Tenant id").fill(TENANT)
    page.get_by_label("Application (client) id").fill(CLIENT_ID)
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_text("Advanced").click()
    page.get_by_label("Sign-in address").fill(authority_url)
    page.get_by_label("Microsoft Graph address").fill(authority_url)
    shot(page, "m365-new")
    page.get_by_role("button", name="Add the connection").click()
    expect(page.get_by_role("status")).to_contain_text("Added Microsoft 365")
    row = page.get_by_role("row", name=re.compile("^office"))
    expect(row).to_contain_text("pending")

    row.get_by_role("button", name="Connect office").click()
    expect(page.get_by_role("heading", name="Microsoft 365 connected")).to_be_visible()
    expect(page.locator("body")).to_contain_text("ann.smith@contoso.test")

    page.goto(site.url + "/console/connections")
    row = page.get_by_role("row", name=re.compile("^office"))
    expect(row).to_contain_text("connected")
    expect(row).to_contain_text("ann.smith@contoso.test")
    expect(page.locator("body")).not_to_contain_text(CLIENT_SECRET)
    shot(page, "connections-m365")

    row.get_by_role("link", name="Disconnect office").click()
    shot(page, "m365-disconnect")
    page.get_by_role("button", name="Disconnect office").click()
    expect(page.get_by_role("status")).to_contain_text("removed Microsoft 365")


def test_an_admin_adds_a_broker_and_a_user_and_picks_a_broker(
    site: Site, page: Page
) -> None:
    sign_in(page, site, ADMIN)

    nav(page, "Brokers").click()
    page.get_by_label("Name").fill("Kiwi Loans")
    page.get_by_label("SalesTrekker address").fill("https://kiwi.salestrekker.com")
    page.get_by_label("SalesTrekker API key").fill("kiwi-key-0123456789abcdef")
    page.get_by_role("button", name="Add the broker").click()
    expect(page.get_by_role("status")).to_contain_text("Added broker Kiwi Loans")
    shot(page, "admin-brokers")

    nav(page, "Users").click()
    page.get_by_label("Email").fill("kim@kiwi.test")
    page.get_by_label("Belongs to").select_option(label="Kiwi Loans")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#password-error")).to_contain_text("at least 10")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("status")).to_contain_text("Added user kim@kiwi.test")
    shot(page, "admin-users")

    page.get_by_label("Broker", exact=True).select_option(label="acme")
    page.get_by_role("button", name="Show").click()
    nav(page, "Rules").click()
    expect(page.get_by_role("heading", name="Rules of acme")).to_be_visible()

"""The console's pages over HTTP: what they show and what their forms do."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, select, update

from brokerhooks.pipeline.decide import decide, record, rule_context
from brokerhooks.pipeline.enrich import Fetched
from brokerhooks.rules.validate import load_rules
from brokerhooks.security.secrets import Secret
from brokerhooks.store import connections, processing
from brokerhooks.store import rules as rule_store
from brokerhooks.store.brokers import get_api_key_encrypted, get_broker
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event, Job
from brokerhooks.store.processing import NEEDS_ATTENTION
from brokerhooks.store.types import utcnow
from brokerhooks.store.users import list_users
from tests.console.conftest import ACME_KEY, PASSWORD, ConsoleApp, csrf_of
from tests.helpers import ANSWERING_NOTES, queue_event

BAD_RULE = """\
rules:
  - id: stage-note
    trigger: dealChangeStage
    actions:
      - kind: salestrekker_note
        params:
          content: "Moved: {{ deal.name }}"
"""


@pytest.fixture
def ann(console: ConsoleApp) -> httpx.Client:
    return console.signed_in(console.add_user("ann@acme.test", console.acme))


def post(
    client: httpx.Client, path: str, form_page: str, **data: str
) -> httpx.Response:
    """Submit a form the way the page at ``form_page`` does, CSRF token included."""
    token = csrf_of(client.get(form_page))
    return client.post(path, data={"csrf": token, **data})


def event_ids_on(page: httpx.Response) -> list[str]:
    return re.findall(r'href="/console/events/([0-9a-f-]{36})"', page.text)


def test_events_pages_go_older_and_back_newer(
    console: ConsoleApp, ann: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("brokerhooks.console.events.PAGE_SIZE", 2)
    ids = [
        queue_event(console.engine, console.acme.id, "dealUpdated", str(uuid.uuid4()))
        for _ in range(5)
    ]
    newest_first = ids[::-1]

    first = ann.get("/console/events")
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older is not None
    second = ann.get(older.group(1).replace("&amp;", "&"))
    third_link = re.search(r'href="([^"]+)" rel="next"', second.text)
    assert third_link is not None
    third = ann.get(third_link.group(1).replace("&amp;", "&"))
    back = re.search(r'href="([^"]+)" rel="prev"', third.text)
    assert back is not None
    again = ann.get(back.group(1).replace("&amp;", "&"))

    assert event_ids_on(first) == newest_first[:2]
    assert event_ids_on(second) == newest_first[2:4]
    assert event_ids_on(third) == newest_first[4:]
    assert 'rel="next"' not in third.text
    assert event_ids_on(again) == event_ids_on(second)


def test_events_filter_by_type_deal_day_and_text(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    deal = str(uuid.uuid4())
    moved = queue_event(console.engine, console.acme.id, "dealChangesStage", deal)
    other = queue_event(
        console.engine, console.acme.id, "contactCreated", str(uuid.uuid4())
    )
    yesterday = queue_event(
        console.engine,
        console.acme.id,
        "dealUpdated",
        str(uuid.uuid4()),
        received_at=utcnow() - timedelta(days=3),
    )

    by_type = ann.get("/console/events", params={"type": "contactCreated"})
    by_deal = ann.get("/console/events", params={"deal": deal})
    by_text = ann.get("/console/events", params={"text": deal[:13]})
    recent = ann.get(
        "/console/events",
        params={"since": (utcnow() - timedelta(days=1)).strftime("%Y-%m-%d")},
    )
    bad = ann.get("/console/events", params={"deal": "nope", "since": "14/03"})

    assert event_ids_on(by_type) == [other]
    assert event_ids_on(by_deal) == [moved]
    assert event_ids_on(by_text) == [moved]
    assert yesterday not in event_ids_on(recent)
    assert moved in event_ids_on(recent)
    assert bad.status_code == 200
    assert "The deal id must be a UUID" in bad.text
    assert "is not a date like 2025-03-14" in bad.text
    assert len(event_ids_on(bad)) == 3


def test_replay_queues_the_event_again(console: ConsoleApp, ann: httpx.Client) -> None:
    event_id = queue_event(
        console.engine, console.acme.id, "dealCreated", str(uuid.uuid4())
    )
    page = f"/console/events/{event_id}"
    with transaction(console.engine, write=True) as connection:
        connection.execute(delete(Job))
        connection.execute(update(Event).values(status="dead", status_reason="gave up"))

    first = post(ann, page + "/replay", page)
    second = post(ann, page + "/replay", page)

    assert first.headers["location"] == f"{page}?notice=replayed"
    assert second.headers["location"] == f"{page}?notice=not-replayed"
    assert "Replay queued" in ann.get(first.headers["location"]).text
    with transaction(console.engine) as connection:
        assert connection.scalar(select(Event.status)) == "received"


def test_bulk_replay_of_parked_events(console: ConsoleApp, ann: httpx.Client) -> None:
    ids = [
        queue_event(console.engine, console.acme.id, "dealUpdated", str(uuid.uuid4()))
        for _ in range(3)
    ]
    with transaction(console.engine, write=True) as connection:
        connection.execute(delete(Job))
        connection.execute(update(Event).values(status=NEEDS_ATTENTION))

    listed = ann.get("/console/attention")
    some = post(
        ann,
        "/console/attention/replay",
        "/console/attention",
        event=ids[0],
        status=NEEDS_ATTENTION,
        scope="selected",
    )
    rest = post(
        ann,
        "/console/attention/replay",
        "/console/attention",
        status=NEEDS_ATTENTION,
        scope="all",
    )

    assert sorted(event_ids_on(listed)) == sorted(ids)
    assert "queued=1&skipped=0" in some.headers["location"]
    assert "queued=2&skipped=0" in rest.headers["location"]
    assert (
        "Queued 2 event(s) for replay; skipped 0."
        in ann.get(rest.headers["location"]).text
    )


def test_a_rule_with_a_mistake_is_not_saved_and_the_error_names_its_line(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    response = post(
        ann, "/console/new-rule", "/console/new-rule", source=BAD_RULE, action="save"
    )

    assert response.status_code == 400
    assert "Line 3" in response.text
    assert "&#39;dealChangeStage&#39; is not an event type" in response.text
    assert 'id="line-3" class="has-problem"' in response.text
    assert "did you mean dealChangesStage?" in response.text
    with transaction(console.engine) as connection:
        assert rule_store.list_rules(connection, console.acme.id) == []


def test_a_rule_is_saved_edited_disabled_and_deleted(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    fixed = BAD_RULE.replace("dealChangeStage", "dealChangesStage")

    saved = post(
        ann, "/console/new-rule", "/console/new-rule", source=fixed, action="save"
    )
    again = post(
        ann, "/console/new-rule", "/console/new-rule", source=fixed, action="save"
    )
    disabled = post(ann, "/console/rules/stage-note/disable", "/console/rules")
    edited = post(
        ann,
        "/console/rules/stage-note",
        "/console/rules/stage-note",
        source=fixed.replace("Moved", "Now"),
        action="save",
    )
    renamed = post(
        ann,
        "/console/rules/stage-note",
        "/console/rules/stage-note",
        source=fixed.replace("id: stage-note", "id: other-note"),
        action="save",
    )

    assert saved.headers["location"].startswith("/console/rules/stage-note?")
    assert again.status_code == 400
    assert "already exists" in again.text
    assert disabled.headers["location"] == (
        "/console/rules?rule=stage-note&notice=rule-disabled"
    )
    assert edited.status_code == 303
    assert renamed.status_code == 400
    assert "this page edits the one rule" in renamed.text
    with transaction(console.engine) as connection:
        [rule] = rule_store.list_rules(connection, console.acme.id)
    assert "Now: {{ deal.name }}" in rule.source
    assert rule.enabled is False  # the text said nothing of `enabled:`

    deleted = post(
        ann, "/console/rules/stage-note/delete", "/console/rules/stage-note/delete"
    )

    assert deleted.status_code == 303
    assert ann.get("/console/rules/stage-note").status_code == 404


def test_the_editor_shows_a_stored_rule_as_a_file(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    fixed = BAD_RULE.replace("dealChangeStage", "dealChangesStage")
    post(ann, "/console/new-rule", "/console/new-rule", source=fixed, action="save")

    page = ann.get("/console/rules/stage-note")

    text = re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S)
    assert text is not None
    assert text.group(1).startswith("rules:\n  - id: stage-note\n    trigger:")


def test_a_back_test_with_no_processed_events_says_so(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    fixed = BAD_RULE.replace("dealChangeStage", "dealChangesStage")

    response = post(
        ann,
        "/console/new-rule",
        "/console/new-rule",
        source=fixed,
        action="backtest",
        period="7d",
    )

    assert response.status_code == 200
    assert "0 processed event(s) in the last 7 days" in response.text
    with transaction(console.engine) as connection:
        assert rule_store.list_rules(connection, console.acme.id) == []


def test_a_recipe_becomes_a_rule_or_says_what_is_wrong(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    form = ann.get("/console/recipes/stage-task")
    values = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.text))
    values.pop("csrf")

    refused = post(
        ann, "/console/recipes/stage-task", "/console/recipes/stage-task", **values
    )
    with transaction(console.engine, write=True) as connection:
        connections.create_m365_connection(
            connection,
            broker_id=console.acme.id,
            name="office",
            kind="app_only",
            tenant_id="tenant",
            client_id="client",
            client_secret_encrypted=console.runtime.vault.encrypt(Secret("s3cret")),
            authority_url="https://login.microsoftonline.com",
            graph_url="https://graph.microsoft.com",
            mailbox="ann@acme.test",
        )
    added = post(
        ann, "/console/recipes/stage-task", "/console/recipes/stage-task", **values
    )

    assert values["connection"] == "office"
    assert refused.status_code == 400
    assert "connection" in refused.text
    assert "office" in refused.text
    assert added.headers["location"].startswith("/console/rules/stage-task?")


def test_the_api_key_is_masked_and_can_be_replaced(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    page = ann.get("/console/connections")
    new_key = "acme-new-key-aaaabbbbccccdddd"

    replaced = post(
        ann,
        "/console/connections/salestrekker/key",
        "/console/connections",
        new_key=new_key,
    )
    taken = post(
        ann,
        "/console/connections/salestrekker/key",
        "/console/connections",
        new_key="other-key-fedcba9876543210fedc",
    )

    assert ACME_KEY not in page.text
    assert ACME_KEY[:4] + "••••" in page.text
    assert "http://127.0.0.1:8000/hooks/salestrekker" in page.text
    assert replaced.headers["location"] == "/console/connections?notice=key-rotated"
    assert taken.status_code == 409
    assert "belongs to another broker" in taken.text
    assert "other-key" not in taken.text
    with transaction(console.engine) as connection:
        stored = get_api_key_encrypted(connection, console.acme.id)
        rotated = get_broker(connection, "acme").key_rotated_at
    assert console.runtime.vault.decrypt(stored) == Secret(new_key)
    assert rotated is not None


def test_a_test_event_goes_through_the_webhook_route(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    sent = post(ann, "/console/connections/salestrekker/test", "/console/connections")

    assert sent.status_code == 303
    event_id = re.search(r"event=([0-9a-f-]{36})", sent.headers["location"])
    assert event_id is not None
    shown = ann.get(f"/console/events/{event_id.group(1)}")
    assert "consoleTest" in shown.text
    assert "unsupported" in shown.text
    assert ACME_KEY not in shown.text


def test_a_microsoft_365_connection_is_added_without_showing_its_secret(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    form = {
        "name": "office",
        "kind": "app_only",
        "tenant": "tenant-id",
        "client_id": "client-id",
        "client_secret": "very-secret-client-value",
        "mailbox": "",
        "authority_url": "https://login.microsoftonline.com",
        "graph_url": "http://graph.example.com",
    }

    refused = post(
        ann, "/console/connections/m365/new", "/console/connections/m365/new", **form
    )
    form.update(mailbox="ann@acme.test", graph_url="https://graph.microsoft.com")
    added = post(
        ann, "/console/connections/m365/new", "/console/connections/m365/new", **form
    )
    listed = ann.get("/console/connections")

    assert refused.status_code == 400
    assert "needs the mailbox" in refused.text
    assert "Give an https:// address." in refused.text
    assert "very-secret-client-value" not in refused.text
    assert (
        added.headers["location"]
        == "/console/connections?name=office&notice=m365-added"
    )
    assert "office" in listed.text
    assert "pending" in listed.text
    assert "very-secret-client-value" not in listed.text


def test_an_admin_adds_a_broker_and_a_user(console: ConsoleApp) -> None:
    admin = console.signed_in(console.add_user("root@example.test", None))

    broker = post(
        admin,
        "/console/admin/brokers",
        "/console/admin/brokers",
        name="kiwi",
        salestrekker_url="https://kiwi.salestrekker.com/",
        api_key="kiwi-key-0123456789",
    )
    duplicate = post(
        admin,
        "/console/admin/brokers",
        "/console/admin/brokers",
        name="kiwi",
        salestrekker_url="https://kiwi.salestrekker.com",
        api_key="kiwi-key-other-0123456789",
    )
    with transaction(console.engine) as connection:
        kiwi = get_broker(connection, "kiwi")
    user = post(
        admin,
        "/console/admin/users",
        "/console/admin/users",
        email="Kim@Kiwi.test",
        role=kiwi.id,
        password=PASSWORD,
    )

    assert broker.status_code == 303
    assert kiwi.salestrekker_url == "https://kiwi.salestrekker.com"
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.text
    assert user.status_code == 303
    kim = console.client()
    assert console.sign_in(kim, "kim@kiwi.test").status_code == 303
    assert "kiwi" in kim.get("/console/").text


def test_an_admin_removes_a_user_but_not_themself(console: ConsoleApp) -> None:
    root = console.add_user("root@example.test", None)
    admin = console.signed_in(root)
    ann = console.add_user("ann@acme.test", console.acme)
    ann_client = console.signed_in(ann)

    self_removal = post(
        admin,
        f"/console/admin/users/{root.id}/remove",
        f"/console/admin/users/{root.id}/remove",
    )
    removed = post(
        admin,
        f"/console/admin/users/{ann.id}/remove",
        f"/console/admin/users/{ann.id}/remove",
    )

    assert self_removal.status_code == 400
    assert removed.status_code == 303
    assert ann_client.get("/console/").status_code == 303
    with transaction(console.engine) as connection:
        assert [user.email for user in list_users(connection)] == ["root@example.test"]


def test_an_admin_picks_a_broker_for_its_rules(console: ConsoleApp) -> None:
    admin = console.signed_in(console.add_user("root@example.test", None))

    unpicked = admin.get("/console/rules")
    token = csrf_of(admin.get("/console/"))
    picked = admin.post(
        "/console/broker",
        data={"csrf": token, "broker": console.other.id, "next": "/console/rules"},
    )
    rules = admin.get("/console/rules")

    assert unpicked.status_code == 409
    assert "Choose a broker" in unpicked.text
    assert picked.headers["location"] == "/console/rules"
    assert "Rules of other" in rules.text


def test_the_root_leads_to_the_console(console: ConsoleApp) -> None:
    response = console.client().get("/")

    assert response.headers["location"] == "/console/"


def test_an_echo_run_names_the_action_that_made_the_item(
    console: ConsoleApp, ann: httpx.Client
) -> None:
    deal = str(uuid.uuid4())
    first = queue_event(
        console.engine, console.acme.id, "noteCreated", str(uuid.uuid4()), deal
    )
    echo = queue_event(
        console.engine, console.acme.id, "noteCreated", str(uuid.uuid4()), deal
    )
    cause = {
        "rule": "answer",
        "step": "reply",
        "kind": "salestrekker_note",
        "action": f"{first}:answer:reply",
        "event": first,
        "rules": ["answer"],
    }
    with transaction(console.engine, write=True) as connection:
        event = processing.load_event(connection, echo)
        note = {"id": event.entity_id, "idTicket": deal, "content": "Seen: hi"}
        broker = {"id": console.acme.id, "name": "acme", "timezone": None}
        context = rule_context(
            event,
            Fetched("note", event.entity_id, note),
            None,
            {},
            broker,
            utcnow(),
            cause,
        )
        verdicts = decide(list(load_rules(ANSWERING_NOTES).rules), context)
        record(connection, event, verdicts, context)
        connection.execute(
            update(Event).where(Event.id == echo).values(caused_by=json.dumps(cause))
        )

    page = ann.get(f"/console/events/{echo}")

    assert page.status_code == 200
    assert 'Rule <a href="/console/rules/answer">answer</a>: echo' in page.text
    assert "caused by step <code>reply</code> of rule" in page.text
    assert f'href="/console/events/{first}"' in page.text
    assert "<dt>Caused by</dt><dd>brokerhooks: step <code>reply</code>" in page.text

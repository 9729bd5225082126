"""send_mail against the Graph simulator: recipients, body, the key header."""

from __future__ import annotations

import dataclasses

import pytest
import structlog

from brokerhooks.actions.base import ActionContext
from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.errors import GraphRequestError
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from brokerhooks.store.processing import LeaseLost
from tests.actions.conftest import ContextFactory
from tests.connectors.msgraph.conftest import ANN

pytestmark = pytest.mark.anyio

MAIL = get_kind("send_mail")


def header(message: dict[str, object], name: str) -> str | None:
    headers = message.get("internetMessageHeaders") or []
    assert isinstance(headers, list)
    for item in headers:
        if item["name"].lower() == name:
            return str(item["value"])
    return None


async def test_sends_an_html_mail_with_the_key_header(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    ctx = make_context(
        "send_mail",
        {
            "to": ["jane@example.com"],
            "cc": ["broker@example.com", "assistant@example.com"],
            "subject": "Your settlement date moved",
            "body": "<p>Hi Jane,</p><p>It is now 11 April.</p>",
            "html": True,
        },
    )

    result = await MAIL.perform(ctx)

    [mail] = graph_sim.sent_mail
    assert mail.mailbox == ANN
    assert mail.to == ["jane@example.com"]
    assert mail.cc == ["broker@example.com", "assistant@example.com"]
    assert mail.subject == "Your settlement date moved"
    assert mail.message["body"] == {
        "contentType": "html",
        "content": "<p>Hi Jane,</p><p>It is now 11 April.</p>",
    }
    assert header(mail.message, "x-brokerhooks-key") == ctx.key
    assert mail.save_to_sent_items is True
    assert result.output["to"] == ["jane@example.com"]


async def test_a_text_body_is_escaped_and_keeps_its_lines(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    await MAIL.perform(
        make_context(
            "send_mail",
            {
                "to": "jane@example.com; raj@example.com",
                "subject": "Smith & Jones",
                "body": "Hi <Jane>,\nSmith & Jones settled.",
            },
        )
    )

    [mail] = graph_sim.sent_mail
    assert mail.to == ["jane@example.com", "raj@example.com"]
    assert mail.message["body"]["content"] == (
        "Hi &lt;Jane&gt;,<br>\nSmith &amp; Jones settled."
    )


class Ledger:
    """What the worker's ledger keeps of a remembered remote id."""

    def __init__(self) -> None:
        self.made: str | None = None
        self.history: list[str | None] = []

    async def remember(self, remote_id: str | None) -> None:
        self.made = remote_id
        self.history.append(remote_id)


PARAMS = {"to": ["jane@example.com"], "subject": "Approved", "body": "Yes."}


async def test_a_try_that_lost_its_job_deletes_its_draft_and_sends_nothing(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    refused: list[str | None] = []

    async def remember(remote_id: str | None) -> None:
        refused.append(remote_id)
        raise LeaseLost("the job belongs to another worker now")

    with pytest.raises(LeaseLost):
        await MAIL.perform(make_context("send_mail", PARAMS, remember=remember))

    [draft] = refused
    assert draft is not None
    assert graph_sim.user(ANN).drafts == {}
    assert graph_sim.user(ANN).sent_items == {}
    assert graph_sim.sent_mail == []


async def test_the_draft_is_remembered_before_it_is_sent(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    ledger = Ledger()

    result = await MAIL.perform(
        make_context("send_mail", PARAMS, remember=ledger.remember)
    )

    [mail] = graph_sim.sent_mail
    [sent] = graph_sim.user(ANN).sent_items.values()
    assert ledger.history == [result.remote_id] == [sent["id"]]
    assert sent["isDraft"] is False
    assert sent["subject"] == mail.subject == "Approved"
    assert graph_sim.user(ANN).drafts == {}
    assert MAIL.guarantee == "exactly-once"


async def test_a_try_after_one_that_sent_does_not_send_again(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    """The worker died after sending, before the ledger said done."""
    ledger = Ledger()
    first = make_context("send_mail", PARAMS, remember=ledger.remember)
    await MAIL.perform(first)

    with structlog.testing.capture_logs() as logs:
        again = await MAIL.perform(
            make_context(
                "send_mail",
                PARAMS,
                event_id=first.event_id,
                unfinished=True,
                made=ledger.made,
                remember=ledger.remember,
                attempt=2,
            )
        )

    assert len(graph_sim.sent_mail) == 1
    assert again.remote_id == ledger.made
    assert [line["event"] for line in logs] == ["send_mail_already_sent"]


async def refused_at_send(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory, ledger: Ledger
) -> ActionContext:
    """A first try whose draft was saved and remembered, but not sent."""
    graph_sim.inject_fault(400, method="POST", path="/send", times=1)
    first = make_context("send_mail", PARAMS, remember=ledger.remember)
    with pytest.raises(GraphRequestError):
        await MAIL.perform(first)
    assert graph_sim.sent_mail == []
    return dataclasses.replace(first, made=ledger.made, attempt=2)


async def test_a_try_after_one_that_died_before_sending_sends_the_draft(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    ledger = Ledger()
    retry = await refused_at_send(graph_sim, make_context, ledger)
    [draft] = graph_sim.user(ANN).drafts

    await MAIL.perform(retry)

    assert ledger.made == draft
    [mail] = graph_sim.sent_mail
    assert header(mail.message, "x-brokerhooks-key") == retry.key
    assert list(graph_sim.user(ANN).sent_items) == [draft]


async def test_a_draft_deleted_before_the_retry_fails_and_is_forgotten(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    """Sent or deleted cannot be told apart: a person decides, by replaying."""
    ledger = Ledger()
    retry = await refused_at_send(graph_sim, make_context, ledger)
    graph_sim.user(ANN).drafts.clear()  # a person deleted the draft

    with pytest.raises(PermanentError, match="Sent Items; replaying sends a new"):
        await MAIL.perform(retry)
    assert ledger.made is None
    # The replay, with nothing remembered, sends a new mail.
    await MAIL.perform(dataclasses.replace(retry, made=None))
    assert len(graph_sim.sent_mail) == 1


async def test_a_connection_that_may_not_save_drafts_sends_in_one_step(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    graph_sim.inject_fault(403, method="POST", path="/messages", times=None)
    ledger = Ledger()

    with structlog.testing.capture_logs() as logs:
        result = await MAIL.perform(
            make_context("send_mail", PARAMS, remember=ledger.remember)
        )

    [mail] = graph_sim.sent_mail
    assert mail.subject == "Approved"
    assert result.output["sent_with"] == "sendMail"
    assert ledger.history == []
    [warning] = [line for line in logs if line["event"] == "send_mail_without_draft"]
    assert warning["log_level"] == "warning"

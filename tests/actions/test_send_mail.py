"""send_mail against the Graph simulator: recipients, body, the key header."""

from __future__ import annotations

import pytest
import structlog

from brokerhooks.actions.registry import get_kind
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
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


async def test_an_unfinished_try_sends_again_and_says_so(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    """At least once: sendMail cannot tell whether the earlier try sent."""
    params = {"to": ["jane@example.com"], "subject": "Approved", "body": "Yes."}
    ctx = make_context("send_mail", params)
    await MAIL.perform(ctx)

    with structlog.testing.capture_logs() as logs:
        await MAIL.perform(
            make_context("send_mail", params, event_id=ctx.event_id, unfinished=True)
        )

    first, second = graph_sim.sent_mail
    assert header(first.message, "x-brokerhooks-key") == header(
        second.message, "x-brokerhooks-key"
    )
    [warning] = [line for line in logs if line["event"] == "send_mail_may_repeat"]
    assert warning["key"] == ctx.key
    assert warning["log_level"] == "warning"
    assert MAIL.guarantee.startswith("at-least-once: ")

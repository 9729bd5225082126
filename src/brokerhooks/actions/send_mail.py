"""``send_mail``: a mail sent from the connection's mailbox through Outlook.

The mail carries the header ``x-brokerhooks-key: <the action's key>``, so a
repeat can be told apart from a second mail by whoever reads the headers.
A plain text body is sent as HTML with its text escaped and its line breaks
kept.

Why not exactly once: ``sendMail`` answers 202 with no id and takes no
idempotency key. Looking in Sent Items for the header before sending again
was considered and left out: Graph cannot filter messages on an internet
header (only on a MAPI property holding it), a message sent a moment ago may
not be in Sent Items yet (or at all, when the mailbox does not save sent
mail), and a miss would send anyway. An attempt after one that may have sent
sends again, and says so in the log.
"""

from __future__ import annotations

import html
from typing import ClassVar

import structlog

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import graph, may_have_acted, read_params
from brokerhooks.connectors.msgraph.resources import MailMessage
from brokerhooks.rules.model import Addresses, SendMailParams

log = structlog.get_logger("brokerhooks.actions")

KEY_HEADER = "x-brokerhooks-key"


class SendMail:
    name: ClassVar[str] = "send_mail"
    why: ClassVar[str] = (
        "sendMail returns no id and takes no idempotency key, so a worker that "
        "dies between sending and recording sends again; the x-brokerhooks-key "
        "header marks the repeat"
    )
    guarantee: ClassVar[str] = f"at-least-once: {why}"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, SendMailParams)
        to, cc = addresses(params.to), addresses(params.cc)
        message = MailMessage(
            to=to,
            cc=cc,
            subject=params.subject,
            html_body=params.body if params.html else text_as_html(params.body),
            headers={KEY_HEADER: ctx.key},
        )
        if may_have_acted(ctx):
            log.warning(
                "send_mail_may_repeat",
                key=ctx.key,
                attempt=ctx.attempt,
                reason="an earlier attempt may have sent this mail; sendMail cannot "
                "tell, so it is sent again",
            )

        async with graph(ctx) as client:
            await client.send_mail(message)
        return ActionResult(
            output={"to": to, "cc": cc, "subject": params.subject, "header": ctx.key}
        )


def addresses(value: Addresses | None) -> list[str]:
    """Rendered addresses: a list, or text separated by commas or semicolons."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [
        part.strip()
        for item in items
        for part in item.replace(";", ",").split(",")
        if part.strip()
    ]


def text_as_html(text: str) -> str:
    """Plain text as an HTML body that reads the same."""
    return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\n")

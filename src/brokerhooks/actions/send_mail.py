"""``send_mail``: a mail sent from the connection's mailbox through Outlook.

Sent in two steps, so that a retry never sends it twice: the mail is saved
as a draft, the draft's id is remembered in the ledger, then the draft is
sent. Outlook keeps the id when the sent mail moves to Sent Items (the
client asks for immutable ids), so a try after one that died finds the
draft and asks whether it is still one:

- still a draft: the earlier try died before sending; it is sent now;
- sent: the earlier try sent it; nothing is sent again;
- gone: a person deleted it, as a draft or from Sent Items, and whether it
  went out cannot be told. The action fails and says so; a replay sends a
  new mail.

A try that died after saving the draft and before remembering it leaves
that draft in Drafts, unsent; the next try makes and sends another. A try
that stalled until another worker took its job over may not remember its
draft (the ledger refuses: ``LeaseLost``); it deletes the draft and stops. A
connection that may send mail but not save drafts (no ``Mail.ReadWrite``:
Graph answers 403) sends with ``sendMail`` in one step instead, which is
only at-least-once, and the log says so. The
mail also carries the header ``x-brokerhooks-key: <the action's key>``. A
plain text body is sent as HTML with its text escaped and its line breaks
kept. (``sendMail``, one step, answers 202 with no id and takes no
idempotency key, so it cannot be made exactly-once.)
"""

from __future__ import annotations

import html
from typing import ClassVar

import structlog

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import graph, read_params
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import GraphRequestError
from brokerhooks.connectors.msgraph.resources import KEY_HEADER, MailMessage
from brokerhooks.rules.model import Addresses, SendMailParams
from brokerhooks.store.processing import LeaseLost

log = structlog.get_logger("brokerhooks.actions")


class SendMail:
    name: ClassVar[str] = "send_mail"
    why: ClassVar[str] = (
        "the mail is saved as a draft and its id kept in the ledger before it is "
        "sent; a retry sends that draft only if it still is one (a person who "
        "deletes it meanwhile gets a failed action to replay, not a second mail)"
    )
    guarantee: ClassVar[str] = "exactly-once"

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
        output = {"to": to, "cc": cc, "subject": params.subject, "header": ctx.key}
        async with graph(ctx) as client:
            if ctx.made is not None:
                sent = await _finish_earlier_try(ctx, client, ctx.made)
                return ActionResult(remote_id=sent, output=output)
            try:
                draft = await client.create_draft(message)
            except GraphRequestError as error:
                if error.status_code != 403:
                    raise
                await _send_in_one_step(ctx, client, message, error)
                return ActionResult(output={**output, "sent_with": "sendMail"})
            if ctx.remember is not None:
                await _remember(ctx, client, draft)
            await _send(client, draft)
        return ActionResult(remote_id=draft, output=output)


async def _send_in_one_step(
    ctx: ActionContext, client: GraphClient, message: MailMessage, refused: Exception
) -> None:
    """sendMail, for a mailbox that may send but not save drafts."""
    log.warning(
        "send_mail_without_draft",
        key=ctx.key,
        reason="the connection may not save drafts (Mail.ReadWrite); the mail is "
        "sent with sendMail, which a retry after a lost answer repeats",
        error=str(refused),
    )
    await client.send_mail(message)


async def _finish_earlier_try(
    ctx: ActionContext, client: GraphClient, draft: str
) -> str:
    """Send the draft an earlier try saved, unless it was sent; its id."""
    state = await client.is_draft(draft)
    if state is True:
        log.info("send_mail_resumed", key=ctx.key, attempt=ctx.attempt)
        await _send(client, draft)
        return draft
    if state is False:
        log.info(
            "send_mail_already_sent",
            key=ctx.key,
            attempt=ctx.attempt,
            reason="an earlier try sent this mail; it is not sent again",
        )
        return draft
    if ctx.remember is not None:
        await ctx.remember(None)
    raise PermanentError(
        "the mail an earlier try saved is no longer in the mailbox: it was deleted "
        "as a draft or from Sent Items, so whether it went out cannot be told. "
        "Look in Sent Items; replaying sends a new mail."
    )


async def _remember(ctx: ActionContext, client: GraphClient, draft: str) -> None:
    """Remember ``draft``; delete it if the job is no longer this try's."""
    assert ctx.remember is not None
    try:
        await ctx.remember(draft)
    except LeaseLost:
        log.warning(
            "send_mail_lease_lost",
            key=ctx.key,
            attempt=ctx.attempt,
            reason="another worker took the job over; this try's draft is deleted "
            "unsent",
        )
        try:
            await client.delete_draft(draft)
        except Exception as error:
            log.warning("send_mail_draft_left", key=ctx.key, error=str(error))
        raise


async def _send(client: GraphClient, draft: str) -> None:
    """Send ``draft``; an answer lost after Outlook sent it is not an error."""
    try:
        await client.send_draft(draft)
    except Exception:
        if await client.is_draft(draft) is False:
            return
        raise


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

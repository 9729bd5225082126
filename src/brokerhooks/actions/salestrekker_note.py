"""``salestrekker_note``: a note written on the event's deal in SalesTrekker.

Why not exactly once: ``noteCreate`` takes no idempotency key, and the API
has no note listing we know of to look for a note an earlier attempt made,
so an attempt after one whose answer was lost writes the note again.
"""

from __future__ import annotations

from typing import ClassVar

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import read_params
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.rules.model import SalesTrekkerNoteParams


class SalesTrekkerNote:
    name: ClassVar[str] = "salestrekker_note"
    why: ClassVar[str] = (
        "noteCreate takes no idempotency key and SalesTrekker has no note "
        "listing to look for an earlier attempt's note, so an attempt after one "
        "whose answer was lost writes the note again"
    )
    guarantee: ClassVar[str] = f"at-least-once: {why}"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, SalesTrekkerNoteParams)
        if ctx.deal_id is None:
            raise PermanentError(
                f"step {ctx.step_id} writes a note on the event's deal, but event "
                f"{ctx.event_id} ({ctx.event.get('type', 'unknown type')}) has no "
                "deal; trigger the rule on deal or note events only"
            )

        note_id = await ctx.services.salestrekker().create_note(
            ctx.deal_id, params.content
        )
        return ActionResult(remote_id=note_id, output={"deal_id": ctx.deal_id})

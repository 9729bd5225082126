"""salestrekker_note against the SalesTrekker simulator."""

from __future__ import annotations

import pytest

from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from tests.actions.conftest import ContextFactory

pytestmark = pytest.mark.anyio

NOTE = get_kind("salestrekker_note")
PARAMS = {"content": "Approved on 14 Mar 2025; valuation task created."}


def notes_on_deal(sim: SalesTrekkerSimulator) -> list[str]:
    return [
        str(note["content"])
        for note in sim.state.notes.values()
        if note["idTicket"] == SalesTrekkerSimulator.DEAL_ID
        and note["id"] != SalesTrekkerSimulator.NOTE_ID
    ]


async def test_writes_the_note_on_the_events_deal(
    salestrekker_sim: SalesTrekkerSimulator, make_context: ContextFactory
) -> None:
    result = await NOTE.perform(make_context("salestrekker_note", PARAMS))

    assert notes_on_deal(salestrekker_sim) == [PARAMS["content"]]
    assert result.remote_id in salestrekker_sim.state.notes
    assert result.output == {"deal_id": SalesTrekkerSimulator.DEAL_ID}


async def test_an_event_without_a_deal_is_refused(
    salestrekker_sim: SalesTrekkerSimulator, make_context: ContextFactory
) -> None:
    ctx = make_context("salestrekker_note", PARAMS, deal_id=None)

    with pytest.raises(PermanentError, match="has no deal"):
        await NOTE.perform(ctx)

    assert salestrekker_sim.requests.total() == 0


async def test_a_deal_salestrekker_does_not_know_is_permanent(
    salestrekker_sim: SalesTrekkerSimulator, make_context: ContextFactory
) -> None:
    ctx = make_context(
        "salestrekker_note", PARAMS, deal_id="7d3c7a55-0000-4000-8000-00000000dead"
    )

    with pytest.raises(PermanentError):
        await NOTE.perform(ctx)


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, 20.0), (503, None)], ids=["429", "503"]
)
async def test_an_unavailable_salestrekker_is_transient(
    salestrekker_sim: SalesTrekkerSimulator,
    make_context: ContextFactory,
    status: int,
    retry_after: float | None,
) -> None:
    salestrekker_sim.fail_requests(1, status=status, retry_after=retry_after)

    with pytest.raises(TransientError) as raised:
        await NOTE.perform(make_context("salestrekker_note", PARAMS))

    assert raised.value.retry_after == retry_after
    assert notes_on_deal(salestrekker_sim) == []

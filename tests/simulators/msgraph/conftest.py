"""Fixtures for the Microsoft 365 simulator: a tenant and raw HTTP to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator

TENANT = "9b1f2c3d-0000-4000-8000-00000000c0de"
CLIENT_ID = "6a1c0de0-0000-4000-8000-000000000001"
CLIENT_SECRET = "sim-client-secret-value"
ANN = "ann.smith@contoso.test"
BOB = "bob.jones@contoso.test"
BASE = "https://m365.test"


@pytest.fixture
def sim() -> MicrosoftGraphSimulator:
    sim = MicrosoftGraphSimulator(tenant_id=TENANT)
    sim.add_app(CLIENT_ID, CLIENT_SECRET)
    sim.add_user(ANN, "Ann Smith")
    sim.add_user(BOB, "Bob Jones")
    return sim


@pytest.fixture
async def http(sim: MicrosoftGraphSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx to the simulator, in-process, with no token."""
    async with httpx.AsyncClient(transport=sim.transport(), base_url=BASE) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

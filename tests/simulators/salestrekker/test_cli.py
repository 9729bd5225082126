"""``brokerhooks simulate`` and ``brokerhooks simulators salestrekker``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner, Result

from brokerhooks.cli.base import cli
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator, seed
from tests.servers import free_port, serve_in_thread, wait_until_ready
from tests.simulators.salestrekker.conftest import API_KEY


@pytest.fixture
def served() -> Iterator[tuple[SalesTrekkerSimulator, str]]:
    simulator = SalesTrekkerSimulator(API_KEY)
    with serve_in_thread(simulator.app) as url:
        yield simulator, url


def simulate(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["simulate", "--simulator-url", url, *args])


def sent_events(url: str) -> list[str]:
    httpx.post(url + "/_sim/flush")
    return [sent["event"] for sent in httpx.get(url + "/_sim/webhooks").json()]


def test_deal_moves_the_demo_deal(
    served: tuple[SalesTrekkerSimulator, str],
) -> None:
    simulator, url = served

    result = simulate(url, "deal", "--stage", "6. Approved", "--owner", "Sam Lee")

    assert result.exit_code == 0, result.output
    assert f"deal {seed.DEAL_ID}: dealChangesStage" in result.output
    deal = simulator.deal(seed.DEAL_ID)
    assert deal["idStage"] == simulator.stage_id("6. Approved")
    assert deal["idOwner"] == simulator.ASSISTANT_ID
    assert sent_events(url) == ["dealChangesStage", "dealChangesOwner"]


def test_deal_create(served: tuple[SalesTrekkerSimulator, str]) -> None:
    simulator, url = served

    result = simulate(
        url, "deal", "--create", "--name", "Kim - Purchase", "--stage", "2. Fact Find"
    )

    assert result.exit_code == 0, result.output
    deal_id = result.output.split()[1].rstrip(":")
    assert simulator.deal(deal_id)["name"] == "Kim - Purchase"
    assert sent_events(url) == ["dealCreated"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deal"], "nothing to do"),
        (["deal", "--create"], "--create needs --name"),
        (["deal", "--stage", "42. Done"], "no stage named '42. Done'"),
        (["deal", "--deal", "missing", "--stage", "6. Approved"], "no deal with id"),
    ],
    ids=["nothing", "no-name", "unknown-stage", "unknown-deal"],
)
def test_deal_refusals_are_explained(
    served: tuple[SalesTrekkerSimulator, str], args: list[str], message: str
) -> None:
    _, url = served

    result = simulate(url, *args)

    assert result.exit_code != 0
    assert message in result.output


def test_note(served: tuple[SalesTrekkerSimulator, str]) -> None:
    simulator, url = served

    result = simulate(url, "note", "--deal", seed.DEAL_ID, "--content", "Hello")

    assert result.exit_code == 0, result.output
    note_id = result.output.split()[1]
    assert simulator.note(note_id)["content"] == "Hello"


def test_journey_takes_a_deal_to_settlement(
    served: tuple[SalesTrekkerSimulator, str],
) -> None:
    simulator, url = served

    result = simulate(url, "journey", "--pause", "0", "--name", "Journey test")

    assert result.exit_code == 0, result.output
    [deal] = [
        d for d in simulator.state.tickets.values() if d["name"] == "Journey test"
    ]
    assert deal["idStage"] == simulator.stage_id("9. Settled")
    assert (deal["isWon"], deal["isSettled"], deal["dueDate"] is not None) == (
        True,
        True,
        True,
    )
    assert sent_events(url) == [
        "dealCreated",
        *["dealChangesStage"] * 3,
        "noteCreated",
        *["dealChangesStage"] * 2,
        "dealChangesDueDate",
        *["dealChangesStage"] * 3,
        "dealChangesStatus",
    ]


def test_faults(served: tuple[SalesTrekkerSimulator, str]) -> None:
    simulator, url = served

    result = simulate(
        url, "faults", "--remove-field", "Ticket.dueDate", "--fail-next", "2"
    )

    assert result.exit_code == 0, result.output
    assert simulator.removed_fields == ["Ticket.dueDate"]
    assert simulator.faults.fail_next == 2
    assert simulate(url, "faults", "--restore-schema").exit_code == 0
    assert simulator.removed_fields == []


def test_unreachable_simulator_is_explained() -> None:
    result = simulate(f"http://127.0.0.1:{free_port()}", "deal", "--stage", "x")

    assert result.exit_code == 1
    assert "cannot reach the SalesTrekker simulator" in result.output


def test_simulators_salestrekker_serves_until_stopped() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brokerhooks",
            "simulators",
            "salestrekker",
            "--port",
            str(port),
        ],
        env={**os.environ, "BROKERHOOKS_SIMULATOR_API_KEY": API_KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_ready(url + "/healthz", process)
        authenticate = "mutation($k: String!) { authenticate(apiKey: $k) { token } }"
        answer = httpx.post(
            url + "/graphql",
            json={"query": authenticate, "variables": {"k": API_KEY}},
        )
        assert answer.json()["data"]["authenticate"]["token"].count(".") == 2
        assert simulate(url, "deal", "--stage", "4. Lodged").exit_code == 0
        assert sent_events(url) == ["dealChangesStage"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)

    assert API_KEY.encode() not in stderr
    assert seed.DEAL_ID.encode() in stderr
